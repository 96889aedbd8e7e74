"""The shape of an ABRASF document as one provider family wants it (part of its dialect).

The ABRASF 2.x documents differ between versions (2.01, 2.02, 2.03, 2.04: element names, the
fields a version has) and between the families that adopted them (Betha's own namespace,
ItemListaServico as `0107`, Aliquota as a fraction or with 4 decimals, DataEmissao as a
dateTime). A DocumentForm names one such shape; the builders (nfse_core.xml.builder) write it and
the validator (nfse_core.xml.validate) checks it against that version's XSD in that namespace.
It is data, read from the registry's dialect profile (nfse_core.providers.dialect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

AbrasfVersion = Literal["2.01", "2.02", "2.03", "2.04"]
# ItemListaServico: "01.07" (the XSD's tsItemListaServico), "0107" (digits only).
ItemFormat = Literal["dotted", "digits"]
# Aliquota: 5% written "5.00" (percent, two decimals), "5.0000" (percent, four decimals) or
# "0.05" (fraction); fraction4 writes the fraction with four decimals ("0.0500").
AliquotaFormat = Literal["percent", "percent4", "fraction", "fraction4"]
# DataEmissao of the RPS: "2026-12-02" or "2026-12-02T00:00:00".
DateFormat = Literal["date", "datetime"]

ABRASF_DOCUMENT_NS: Final = "http://www.abrasf.org.br/nfse.xsd"


@dataclass(frozen=True, slots=True)
class DocumentForm:
    """Version, namespace and value formats of the ABRASF documents of one provider family."""

    version: AbrasfVersion = "2.04"
    namespace: str = ABRASF_DOCUMENT_NS
    item_format: ItemFormat = "dotted"
    aliquota_format: AliquotaFormat = "percent"
    date_format: DateFormat = "date"


PLAIN_2_04: Final = DocumentForm()


BETHA_DOCUMENT_NS: Final = "http://www.betha.com.br/e-nota-contribuinte-ws"
"""Betha's ABRASF 2.02 documents: the 2.02 schema in Betha's own namespace
(nfselib-legacy schemas/NFSe/BETHA/nfse_v202.xsd)."""

ABRASF_VERSIONS: Final[tuple[AbrasfVersion, ...]] = ("2.01", "2.02", "2.03", "2.04")
ITEM_FORMATS: Final[tuple[ItemFormat, ...]] = ("dotted", "digits")
ALIQUOTA_FORMATS: Final[tuple[AliquotaFormat, ...]] = (
    "percent",
    "percent4",
    "fraction",
    "fraction4",
)
DATE_FORMATS: Final[tuple[DateFormat, ...]] = ("date", "datetime")
