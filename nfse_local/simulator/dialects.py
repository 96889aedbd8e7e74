"""The provider families the simulator speaks, each under its own path prefix on the one port.

The table is the simulator's own, written from tests/fixtures/abrasf_dialects/<family>/FACTS.md
(the public sources and what could not be confirmed are listed there); it imports nothing from
nfse_core. A request reaches a family by the first segment of its path: `/<family>/<the rest of
the provider's real path>`, e.g. `/issnet-2.04/abrasf204/itauna/nfse.asmx`. `/nfse` (and every
path that names no family) stays the lenient plain ABRASF 2.04 service the simulator always was.

    FAMILIES["betha-2.02"].prefix  ->  "/betha-2.02"
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

ABRASF_NS: Final = "http://www.abrasf.org.br/nfse.xsd"
BETHA_NS: Final = "http://www.betha.com.br/e-nota-contribuinte-ws"
ABRASF_WSDL_NS: Final = "http://nfse.abrasf.org.br"

# The operations every family answers (the simulator's names, ABRASF's).
OPERATIONS: Final = (
    "GerarNfse",
    "ConsultarNfsePorRps",
    "CancelarNfse",
    "RecepcionarLoteRpsSincrono",
)


class PartForm(StrEnum):
    """How nfseCabecMsg / nfseDadosMsg carry their XML."""

    ESCAPED = "escaped"  # the XML as the text of the part (string-typed WSDL parts)
    INLINE = "inline"  # the XML as the part's child element


class ReferenceUri(StrEnum):
    """The form of each XMLDSig Reference URI the family's signatures carry."""

    ID = "id"  # URI="#<Id of the signed element>"
    EMPTY = "empty"  # URI="" (the whole document, enveloped)


class ItemFormat(StrEnum):
    """How ItemListaServico is written."""

    DOTTED = "dotted"  # 01.07 (an enumeration in the 2.04 XSD)
    DIGITS = "digits"  # 0107 (ACBr's filsSemFormatacao)


@dataclass(frozen=True)
class Dialect:
    """How one provider family talks: envelope, parts, actions, answers, signatures, formats."""

    name: str
    document_ns: str
    version: str  # versao of the documents and versaoDados of the cabecalho
    cabecalho_versao: str  # the cabecalho's versao attribute
    schema: str  # which compiled XSD (parsing.family_schema_errors)
    wrapper_ns: str
    wrapper_suffix: str  # "Request" for {Op}Request, "" for {Op}
    part_form: PartForm
    soap_actions: dict[str, str]  # operation -> SOAPAction
    answer_part: str  # "outputXML", "return", or "{Op}Result"
    answer_declaration: str | None  # an XML declaration put at the start of the answer's text
    signed: frozenset[str]  # operations whose document must be signed
    reference_uri: ReferenceUri
    consult_in_pedido: bool  # ConsultarNfseRpsEnvio/Pedido/{IdentificacaoRps, Prestador}
    item_format: ItemFormat
    soap_versions: frozenset[str]  # "1.1", "1.2"

    @property
    def prefix(self) -> str:
        """The local path prefix: `/<name>`."""
        return f"/{self.name}"

    def wrapper(self, operation: str) -> str:
        return f"{operation}{self.wrapper_suffix}"

    def answer_part_name(self, operation: str) -> str:
        return self.answer_part.replace("{Op}", operation)


def _abrasf_actions() -> dict[str, str]:
    return {op: f"{ABRASF_WSDL_NS}/{op}" for op in OPERATIONS}


FAMILIES: Final[dict[str, Dialect]] = {
    "abrasf-2.04": Dialect(
        name="abrasf-2.04",
        document_ns=ABRASF_NS,
        version="2.04",
        cabecalho_versao="2.04",
        schema="abrasf-2.04",
        wrapper_ns=ABRASF_WSDL_NS,
        wrapper_suffix="Request",
        part_form=PartForm.ESCAPED,
        soap_actions=_abrasf_actions(),
        answer_part="outputXML",
        answer_declaration=None,
        signed=frozenset({"GerarNfse", "RecepcionarLoteRpsSincrono", "CancelarNfse"}),
        reference_uri=ReferenceUri.ID,
        consult_in_pedido=False,
        item_format=ItemFormat.DOTTED,
        soap_versions=frozenset({"1.1", "1.2"}),
    ),
    "issnet-2.04": Dialect(
        name="issnet-2.04",
        document_ns=ABRASF_NS,
        version="2.04",
        cabecalho_versao="1.00",
        schema="issnet-2.04",
        wrapper_ns=ABRASF_WSDL_NS,
        wrapper_suffix="",
        part_form=PartForm.INLINE,
        soap_actions=_abrasf_actions(),
        answer_part="{Op}Result",
        answer_declaration=None,
        signed=frozenset(OPERATIONS),
        reference_uri=ReferenceUri.EMPTY,
        consult_in_pedido=True,
        item_format=ItemFormat.DOTTED,
        soap_versions=frozenset({"1.1"}),
    ),
    "webiss-2.02": Dialect(
        name="webiss-2.02",
        document_ns=ABRASF_NS,
        version="2.02",
        cabecalho_versao="2.02",
        schema="abrasf-2.02",
        wrapper_ns=ABRASF_WSDL_NS,
        wrapper_suffix="Request",
        part_form=PartForm.ESCAPED,
        soap_actions=_abrasf_actions(),
        answer_part="outputXML",
        answer_declaration=None,
        signed=frozenset({"GerarNfse", "RecepcionarLoteRpsSincrono", "CancelarNfse"}),
        reference_uri=ReferenceUri.ID,
        consult_in_pedido=False,
        item_format=ItemFormat.DIGITS,
        soap_versions=frozenset({"1.1", "1.2"}),
    ),
    "betha-2.02": Dialect(
        name="betha-2.02",
        document_ns=BETHA_NS,
        version="2.02",
        cabecalho_versao="2.02",
        schema="betha-2.02",
        wrapper_ns=BETHA_NS,
        wrapper_suffix="",
        part_form=PartForm.ESCAPED,
        soap_actions={
            "GerarNfse": "GerarNfseEnvio",
            "ConsultarNfsePorRps": "ConsultarNfseRpsEnvio",
            "CancelarNfse": "CancelarNfseEnvio",
            "RecepcionarLoteRpsSincrono": "RecepcionarLoteRpsSincronoEnvio",
        },
        answer_part="return",
        answer_declaration='<?xml version="1.0" encoding="ISO-8859-1"?>',
        signed=frozenset({"GerarNfse", "RecepcionarLoteRpsSincrono", "CancelarNfse"}),
        reference_uri=ReferenceUri.ID,
        consult_in_pedido=False,
        item_format=ItemFormat.DIGITS,
        soap_versions=frozenset({"1.1"}),
    ),
}


def family_of_path(path: str) -> Dialect | None:
    """The family a request path names by its first segment; None for any other path."""
    first = path.split("?", 1)[0].lstrip("/").split("/", 1)[0]
    return FAMILIES.get(first)
