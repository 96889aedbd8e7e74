"""NFS-e Nacional XSDs (leiaute 1.01) loaded from the installed nfelib package, compiled once.

nfelib (PyPI, 3.2.x) ships the official v1.01 schemas under nfelib/nfse/schemas/v1_0: DPS_v1.01.xsd
(the declaration we send), NFSe_v1.01.xsd (the document SEFIN Nacional returns), their common
types and the XMLDSig schema they import. They are read from the package, never copied here.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import metadata
from pathlib import Path

from lxml import etree

NACIONAL_NS = "http://www.sped.fazenda.gov.br/nfse"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
# The layout version written in DPS@versao (TVerNFSe accepts 1.00 and 1.01).
LEIAUTE_VERSION = "1.01"

_SCHEMA_DIR = "nfelib/nfse/schemas/v1_0"
_DPS_FILE = "DPS_v1.01.xsd"
_NFSE_FILE = "NFSe_v1.01.xsd"

# lxml keeps the messages of the last run on the shared validator (error_log): reading them must
# not interleave with another thread's run.
_lock = threading.Lock()


def nacional_path(path: str) -> str:
    """The Clark-notation ElementPath of `path` ("infDPS/prest/CNPJ"), every step in the NFS-e
    Nacional namespace."""
    return "/".join(f"{{{NACIONAL_NS}}}{step}" for step in path.split("/"))


@cache
def schema_dir() -> Path:
    """The directory of the v1.01 XSDs inside the installed nfelib."""
    dist = metadata.distribution("nfelib")
    path = Path(str(dist.locate_file(_SCHEMA_DIR)))
    if not (path / _DPS_FILE).is_file():
        raise FileNotFoundError(f"NFS-e Nacional XSDs not at {path}; is nfelib installed?")
    return path


def _compile(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(schema_dir() / name), parser))


@cache
def dps_schema() -> etree.XMLSchema:
    """The compiled DPS_v1.01.xsd (built once per process)."""
    return _compile(_DPS_FILE)


@cache
def nfse_schema() -> etree.XMLSchema:
    """The compiled NFSe_v1.01.xsd (built once per process)."""
    return _compile(_NFSE_FILE)


def errors_of(
    schema: etree.XMLSchema, document: etree._Element | etree._ElementTree
) -> list[tuple[str, str]]:
    """(path, message) of every XSD violation in the document; empty when it is valid."""
    with _lock:
        if schema.validate(document):
            return []
        return [(e.path or "", e.message) for e in schema.error_log]  # type: ignore[attr-defined]


def dps_errors(document: etree._Element | etree._ElementTree) -> list[str]:
    """Messages of every violation of the DPS XSD; empty when the document is valid."""
    return [f"{path}: {message}" for path, message in errors_of(dps_schema(), document)]


def nfse_errors(document: etree._Element | etree._ElementTree) -> list[str]:
    """Messages of every violation of the NFSe XSD; empty when the document is valid."""
    return [f"{path}: {message}" for path, message in errors_of(nfse_schema(), document)]
