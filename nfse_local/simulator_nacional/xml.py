"""How the simulator reads and checks XML: a hardened parser, the v1.01 XSDs of the installed
nfelib package (DPS and NFSe, compiled once per process), and the DPS's data area
(base64 of gzip).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import threading
import zlib
from functools import cache
from importlib import resources
from typing import Any, Final

from lxml import etree

NFSE_NS: Final = "http://www.sped.fazenda.gov.br/nfse"
DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
MAX_XML_BYTES: Final = 1_000_000  # after gunzip: a DPS is a few kB; refuses gzip bombs
# nfelib ships the Sistema Nacional NFS-e XSDs v1.01 (leiaute of 2025) in this folder.
_SCHEMA_DIR: Final = "nfse/schemas/v1_0"
# lxml keeps a validator's error log on the validator, so validation is serialized.
_SCHEMA_LOCK = threading.Lock()


def nfse_tag(local: str) -> str:
    """The Clark name of `local` in the NFS-e namespace."""
    return f"{{{NFSE_NS}}}{local}"


def nfse_path(path: str) -> str:
    """A slash-separated path of NFS-e elements, in Clark notation."""
    return "/".join(nfse_tag(step) for step in path.split("/"))


class UnreadableData(ValueError):
    """A data area the simulator refuses: not base64, not gzip, too large, or not XML."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # "base64", "gzip", "too_large", "malformed", "doctype"
        self.detail = detail


def unpack_data_area(value: str) -> bytes:
    """The XML bytes of a `...XmlGZipB64` field: base64, then gzip, at most MAX_XML_BYTES."""
    try:
        packed = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnreadableData("base64", str(exc)) from exc
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        data = decompressor.decompress(packed, MAX_XML_BYTES + 1)
    except zlib.error as exc:
        raise UnreadableData("gzip", str(exc)) from exc
    if len(data) > MAX_XML_BYTES:
        raise UnreadableData("too_large", f"more than {MAX_XML_BYTES} bytes once decompressed")
    if not decompressor.eof:
        raise UnreadableData("gzip", "truncated gzip stream")
    return data


def pack_data_area(xml: bytes) -> str:
    """base64(gzip(xml)), the form of every `...XmlGZipB64` field."""
    return base64.b64encode(gzip.compress(xml)).decode("ascii")


def parse_untrusted(data: bytes) -> etree._Element:
    """The root of `data`, read without DTDs, entities, network or huge-tree allowances;
    a document that declares a DOCTYPE is refused whatever it declares."""
    if len(data) > MAX_XML_BYTES:
        raise UnreadableData("too_large", f"{len(data)} bytes")
    parser = etree.XMLParser(  # one per call: lxml parsers are not shared between threads
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UnreadableData("malformed", str(exc)) from exc
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnreadableData("doctype", "documents with a DOCTYPE are not accepted")
    return root


def prefixed_elements(root: etree._Element) -> list[str]:
    """The qualified names of the elements written with a namespace prefix."""
    return sorted({f"{e.prefix}:{etree.QName(e).localname}" for e in root.iter() if e.prefix})


@cache
def _schema(file_name: str) -> etree.XMLSchema:
    path = resources.files("nfelib") / _SCHEMA_DIR / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{file_name} not in nfelib ({path}); is nfelib 3.2 installed?")
    # Files of an installed package, not requests: their includes and imports are read from disk.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(path), parser))


def _errors(schema: etree.XMLSchema, document: etree._Element) -> list[str]:
    with _SCHEMA_LOCK:
        if schema.validate(document):
            return []
        entries: Any = schema.error_log
        return [f"line {e.line}: {e.message}" for e in entries]


def dps_schema_errors(document: etree._Element) -> list[str]:
    """Every violation of DPS_v1.01.xsd (empty when valid)."""
    return _errors(_schema("DPS_v1.01.xsd"), document)


def nfse_schema_errors(document: etree._Element) -> list[str]:
    """Every violation of NFSe_v1.01.xsd (empty when valid)."""
    return _errors(_schema("NFSe_v1.01.xsd"), document)
