"""How the simulator reads a request: its own hardened lxml parser and the ABRASF 2.04 XSD.

The XSD is the one of the installed nfselib-legacy package, compiled once per process.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from lxml import etree

MAX_REQUEST_BYTES: Final = 2_000_000


class UnreadableXml(ValueError):
    """A document the simulator refuses to read: too large, a DOCTYPE, or not XML."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_untrusted(data: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> etree._Element:
    """The root of `data`, read without DTDs, entities, network or huge-tree allowances.

    The size is checked before libxml2 sees a byte. A document that declares a DOCTYPE is
    refused whatever it declares: no ABRASF message has one, and it is where entity tricks
    (billion laughs, external entities) live.
    """
    if len(data) > max_bytes:
        raise UnreadableXml("too_large", f"{len(data)} bytes is more than {max_bytes}")
    # One parser per call: an lxml parser must not be used by two threads at once.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UnreadableXml("malformed", str(exc)) from exc
    docinfo: Any = root.getroottree().docinfo  # `doctype` is missing from the stubs
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnreadableXml("doctype", "documents with a DOCTYPE are not accepted")
    return root


# The ABRASF copy in nfselib-legacy has no targetNamespace; the ISSNET copy is the same 2.04
# schema with the ABRASF target namespace, the one the documents are written in.
_SCHEMA_FILE: Final = "schemas/NFSe/ISSNET/nfse_v2-04.xsd"
# lxml keeps a validator's error log on the validator object, so two threads validating at
# once would read each other's errors; validation takes about a millisecond.
_SCHEMA_LOCK = threading.Lock()


@cache
def _schema() -> etree.XMLSchema:
    path = Path(str(metadata.distribution("nfselib-legacy").locate_file(_SCHEMA_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"ABRASF 2.04 XSD not at {path}; is nfselib-legacy installed?")
    # A file of an installed package, not a request: its xmldsig import is read from disk.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(path), parser))


def schema_errors(document: etree._Element) -> list[str]:
    """Every XSD violation of `document` (empty when valid)."""
    return _errors(_schema(), document)


def _errors(schema: etree.XMLSchema, document: etree._Element) -> list[str]:
    with _SCHEMA_LOCK:
        if schema.validate(document):
            return []
        log_entries: Any = schema.error_log  # the stubs do not type the entries
        return [f"line {e.line}: {e.message}" for e in log_entries]


# The XSD of each family (dialects.Dialect.schema), files of the installed nfselib-legacy.
_FAMILY_SCHEMA_FILES: Final = {
    "abrasf-2.04": _SCHEMA_FILE,
    "issnet-2.04": _SCHEMA_FILE,
    "abrasf-2.02": "schemas/NFSe/ABRASF/nfse_v2_02.xsd",
    "betha-2.02": "schemas/NFSe/BETHA/nfse_v202.xsd",
}
_XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"
# ISSNet 2.04 wraps the consult in a Pedido followed by an optional Signature (the ISSNet
# 2.04 XSD ACBr ships, Exemplos/ACBrDFe/Schemas/NFSe/ISSNet/2.04/nfse.xsd); nfselib-legacy's
# copy has the plain ABRASF element, so the simulator puts ISSNet's definition in its place.
_ISSNET_CONSULT: Final = f"""
<xsd:element xmlns:xsd="{_XSD_NS}" xmlns:dsig="http://www.w3.org/2000/09/xmldsig#"
    name="ConsultarNfseRpsEnvio"><xsd:complexType><xsd:sequence>
  <xsd:element name="Pedido" minOccurs="1" maxOccurs="1"><xsd:complexType><xsd:sequence>
    <xsd:element name="IdentificacaoRps" type="tcIdentificacaoRps" minOccurs="1" maxOccurs="1"/>
    <xsd:element name="Prestador" type="tcIdentificacaoPessoaEmpresa" minOccurs="1" maxOccurs="1"/>
  </xsd:sequence></xsd:complexType></xsd:element>
  <xsd:element ref="dsig:Signature" minOccurs="0" maxOccurs="1"/>
</xsd:sequence></xsd:complexType></xsd:element>
"""


@cache
def _family_schema(name: str) -> etree.XMLSchema:
    relative = _FAMILY_SCHEMA_FILES[name]
    path = Path(str(metadata.distribution("nfselib-legacy").locate_file(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"{name} XSD not at {path}; is nfselib-legacy installed?")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    tree = etree.parse(str(path), parser)
    if name == "issnet-2.04":
        root = tree.getroot()
        old = root.find(f"{{{_XSD_NS}}}element[@name='ConsultarNfseRpsEnvio']")
        if old is None:
            raise ValueError("ConsultarNfseRpsEnvio missing from the ABRASF 2.04 XSD")
        root.replace(old, etree.fromstring(_ISSNET_CONSULT, parser))
    return etree.XMLSchema(tree)


def family_schema_errors(document: etree._Element, name: str) -> list[str]:
    """Every violation of `document` against the XSD the family `name` validates with."""
    return _errors(_family_schema(name), document)
