"""ABRASF 2.04 XSD loaded from the installed nfselib-legacy package, compiled once per process."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

from lxml import etree

NFSE_NS = "http://www.abrasf.org.br/nfse.xsd"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"


def nfse_path(path: str) -> str:
    """The Clark-notation ElementPath of `path` ("Rps/InfDeclaracaoPrestacaoServico"), every
    step in the ABRASF namespace; one step is a tag name."""
    return "/".join(f"{{{NFSE_NS}}}{step}" for step in path.split("/"))


# The ABRASF copy in the package has no targetNamespace; the ISSNET one is the same schema
# with the ABRASF namespace (see docs/architecture.md).
_SCHEMA_FILE = "schemas/NFSe/ISSNET/nfse_v2-04.xsd"


@cache
def schema_path() -> Path:
    """Path of the namespaced ABRASF 2.04 XSD inside the installed nfselib-legacy."""
    dist = metadata.distribution("nfselib-legacy")
    path = Path(str(dist.locate_file(_SCHEMA_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"ABRASF 2.04 XSD not at {path}; is nfselib-legacy installed?")
    return path


@cache
def abrasf_schema() -> etree.XMLSchema:
    """The compiled XSD (lxml, libxml2): the hot-path validator, built once per process."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(schema_path()), parser))


def schema_errors(document: etree._Element | etree._ElementTree) -> list[str]:
    """Messages of every XSD violation in the document; empty when it is valid."""
    schema = abrasf_schema()
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]  # type: ignore[attr-defined]
