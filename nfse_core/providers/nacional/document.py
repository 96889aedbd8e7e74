"""The NFS-e Nacional document side of the plug-in (nfse_core.providers.plugin.ProviderDocument).

`NacionalDocument` builds the DPS (nfse_core.providers.nacional.dps), checks it against the DPS
XSD of nfelib and returns the bytes stored and signed.

dhEmi: the protocol hands the document a date (`emitted_on`), and a resumed emit must rebuild the
same bytes, so dhEmi is derived from that date alone: 00:00 of it in the municipality's zone.
Any other time of day would need a clock reading that a resumed emit could not repeat; the XSD
type (TSDateTimeUTC) wants a date and time with its UTC offset, which this gives, and midnight
never lies after the moment the DPS reaches the service.
"""

from __future__ import annotations

from datetime import date

from lxml import etree

from nfse_core.domain.errors import FieldError, SchemaInvalid
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.providers.nacional.dps import (
    AMBIENTE_HOMOLOGACAO,
    build_dps,
    emission_moment,
    unsupported_fields,
)
from nfse_core.providers.nacional.schema import dps_schema, errors_of

STANDARD = "nacional-1.01"
SCHEMA_INVALID_MESSAGE = "The DPS document does not satisfy the NFS-e Nacional 1.01 schema"


class NacionalDocument:
    """The unsigned DPS of one invoice, XSD-validated; `ambiente` is its tpAmb."""

    def __init__(self, ambiente: int = AMBIENTE_HOMOLOGACAO) -> None:
        self.ambiente = ambiente

    @property
    def standard(self) -> str:
        return STANDARD

    def unsupported(self, request: InvoiceRequest) -> list[FieldError]:
        """What the DPS cannot carry: no cTribNac to choose, and the fields without a DPS
        element or narrower there (nfse_core.providers.nacional.dps.unsupported_fields)."""
        return [FieldError(field, message) for field, message in unsupported_fields(request)]

    def build(self, request: InvoiceRequest, rps: RpsIdentity, emitted_on: date) -> etree._Element:
        """The DPS element, validated (SchemaInvalid with element paths otherwise)."""
        dps = build_dps(
            request, rps, emission_moment(emitted_on, request.municipio), ambiente=self.ambiente
        )
        validate_dps(dps)
        return dps

    def build_document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> bytes:
        """UTF-8 bytes with an XML declaration; `invoice_id` plays no part (the DPS Id comes
        from the prestador, série and number)."""
        del invoice_id
        return to_bytes(self.build(request, rps, emitted_on))


def to_bytes(element: etree._Element) -> bytes:
    """The document as stored and sent: UTF-8 with an XML declaration, no added whitespace."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)


def validate_dps(element: etree._Element) -> None:
    """Raise SchemaInvalid with one FieldError per XSD message when the DPS is not valid."""
    errors = errors_of(dps_schema(), element)
    if errors:
        details = [FieldError(readable_path(element, path), message) for path, message in errors]
        raise SchemaInvalid(SCHEMA_INVALID_MESSAGE, details)


def readable_path(element: etree._Element, path: str) -> str:
    """libxml2's positional path (/*/*[10]/*) as local names (DPS/infDPS/valores/...)."""
    try:
        found = element.getroottree().xpath(path) if path else None
    except etree.XPathError:
        return path
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
        return path
    steps: list[str] = []
    node: etree._Element | None = found[0]
    while node is not None:
        steps.append(etree.QName(node).localname)
        node = node.getparent()
    return "/".join(reversed(steps))


DOCUMENT = NacionalDocument()
