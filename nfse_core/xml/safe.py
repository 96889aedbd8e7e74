"""The one hardened XML parser for documents we did not build: provider answers, S3 read-backs.

No DTD is loaded, no entity is resolved, nothing is fetched from the network or the file system,
libxml2's size and depth limits stay on, and any document that declares a DOCTYPE (and so could
declare entities) is refused outright, whatever it declares.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum

from lxml import etree

DEFAULT_MAX_BYTES = 1_000_000
_NO_DOCTYPE = "documents with a DOCTYPE (DTD or entity declarations) are not accepted"


class RejectReason(StrEnum):
    TOO_LARGE = "too_large"
    DOCTYPE = "doctype"
    MALFORMED = "malformed"


class UnsafeXml(ValueError):
    """A document parse_untrusted refused; `reason` says why, `detail` adds the specifics."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class _DoctypeProbe:
    """Parser target that only notes whether the document opened a DOCTYPE."""

    def __init__(self) -> None:
        self.seen = False

    def doctype(self, name: object, pubid: object, system: object) -> None:
        self.seen = True

    def start(self, tag: object, attrib: object, nsmap: object = None) -> None:
        pass

    def end(self, tag: object) -> None:
        pass

    def data(self, data: object) -> None:
        pass

    def comment(self, text: object) -> None:
        pass

    def pi(self, target: object, data: object = None) -> None:
        pass

    def close(self) -> None:
        return None


def _parser(target: _DoctypeProbe | None = None) -> etree.XMLParser:
    # A parser is built per call: lxml parsers must not be shared between threads, and
    # building one costs about a microsecond.
    return etree.XMLParser(
        target=target,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def parse_untrusted(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """The root element of `data`, or UnsafeXml when it is too big, has a DOCTYPE or is not XML."""
    if len(data) > max_bytes:
        raise UnsafeXml(
            RejectReason.TOO_LARGE, f"{len(data)} bytes is more than the limit of {max_bytes}"
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        # libxml2 stops many entity tricks with an error of its own (amplification limit,
        # external entity in an attribute); those documents are still refused for their
        # DOCTYPE, so the reason does not depend on which guard fired first.
        if _declares_doctype(data):
            raise UnsafeXml(RejectReason.DOCTYPE, _NO_DOCTYPE) from exc
        raise UnsafeXml(RejectReason.MALFORMED, str(exc)) from exc
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise UnsafeXml(RejectReason.DOCTYPE, _NO_DOCTYPE)
    return root


def _declares_doctype(data: bytes) -> bool:
    """Whether `data` opens a DOCTYPE, read with the same hardened options and no tree."""
    probe = _DoctypeProbe()
    with contextlib.suppress(etree.XMLSyntaxError):
        etree.fromstring(data, _parser(probe))
    return probe.seen
