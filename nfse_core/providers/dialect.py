"""How one ABRASF provider family talks: a dialect profile, data the ABRASF client reads.

ABRASF fixed the documents, not the web services: each provider family wraps them its own way.
A dialect says, for one family, everything the SOAP client (nfse_core.providers.abrasf) and the
document builders (nfse_core.xml.builder, through its DocumentForm) need:

- the documents: ABRASF version (2.01-2.04), their namespace, and value formats (ItemListaServico
  `01.07` or `0107`, Aliquota scale, DataEmissao as date or dateTime);
- the envelope: SOAP version, the WSDL namespace, the wrapper element of each operation, the
  cabecalho (versao and versaoDados, or none), the names of the parts and how the document rides
  in them (escaped text, CDATA, or inline XML), the SOAPAction;
- the answer: which element holds it (`outputXML`, `return`, `{operation}Result`, or the answer
  document itself inline), escaped or inline is read from what arrives;
- signing: which operations are signed, the Reference URI form (`#Id` or the whole document) and
  the X509Data form (the chain, or exactly one certificate on one line);
- the codes: duplicate RPS and "RPS not found" (in ProviderConfig, beside the timeouts).

Templates take `{namespace}` (the WSDL namespace), `{operation}` (GerarNfse) and `{request}` (the
request document's element, GerarNfseEnvio). The profiles of the families live in
nfse_core/providers/data/providers.json, each fact with its public source.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfse_core.xml.forms import (
    ABRASF_DOCUMENT_NS,
    AbrasfVersion,
    AliquotaFormat,
    DateFormat,
    DocumentForm,
    ItemFormat,
)

ABRASF_WSDL_NS: Final = "http://nfse.abrasf.org.br"

Operation = Literal[
    "gerar_nfse", "recepcionar_lote_rps_sincrono", "consultar_nfse_por_rps", "cancelar_nfse"
]
PartForm = Literal["escaped", "cdata", "inline"]
ReferenceUri = Literal["id", "empty"]
X509Form = Literal["chain", "single"]

# The ABRASF operations: SOAP operation name, request document, answer document.
OPERATION_NAMES: Final[dict[str, tuple[str, str, str]]] = {
    "gerar_nfse": ("GerarNfse", "GerarNfseEnvio", "GerarNfseResposta"),
    "recepcionar_lote_rps_sincrono": (
        "RecepcionarLoteRpsSincrono",
        "EnviarLoteRpsSincronoEnvio",
        "EnviarLoteRpsSincronoResposta",
    ),
    "consultar_nfse_por_rps": (
        "ConsultarNfsePorRps",
        "ConsultarNfseRpsEnvio",
        "ConsultarNfseRpsResposta",
    ),
    "cancelar_nfse": ("CancelarNfse", "CancelarNfseEnvio", "CancelarNfseResposta"),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OperationDialect(_Frozen):
    """What one operation of a family does differently from the family's templates."""

    name: str | None = None
    wrapper: str | None = None
    soap_action: str | None = None
    answer: str | None = None


class OperationCall(_Frozen):
    """One operation as a family spells it, its templates expanded."""

    operation: str
    request_element: str
    response_element: str
    wrapper: str
    soap_action: str | None
    answer: str
    signed: bool


class AbrasfDialect(_Frozen):
    """One ABRASF provider family's web service (see the module docstring)."""

    family: str = Field(default="abrasf-2.04", min_length=1)
    # -- documents
    version: AbrasfVersion = "2.04"
    document_namespace: str = ABRASF_DOCUMENT_NS
    item_format: ItemFormat = "dotted"
    aliquota_format: AliquotaFormat = "percent"
    date_format: DateFormat = "date"
    # -- envelope
    soap_version: Literal["1.1", "1.2"] = "1.1"
    wsdl_namespace: str = ABRASF_WSDL_NS
    # The prefix the envelope gives the WSDL namespace (`nfse:GerarNfse`).
    wsdl_prefix: str = "nfse"
    wrapper: str = "{operation}Request"
    # The cabecalho's versao attribute; None: no cabecalho part at all.
    cabecalho_versao: str | None = "2.04"
    versao_dados: str = "2.04"
    header_part: str | None = "nfseCabecMsg"
    data_part: str = "nfseDadosMsg"
    part_form: PartForm = "escaped"
    # Parts in the WSDL namespace (`nfse:xml`) rather than unqualified (`nfseDadosMsg`).
    parts_qualified: bool = False
    # None: no SOAPAction at all; "": the empty action (`SOAPAction: ""`).
    soap_action: str | None = "{namespace}/{operation}"
    # The element holding the answer; "" for the answer document itself, inline in the Body.
    answer: str = "outputXML"
    # ConsultarNfseRpsEnvio holds its IdentificacaoRps and Prestador in a Pedido (ISSNet 2.04's
    # XSD), which is what gets signed.
    consult_pedido: bool = False
    operations: dict[Operation, OperationDialect] = Field(default_factory=dict)
    # -- signing
    signed_operations: frozenset[Operation] = frozenset({"gerar_nfse", "cancelar_nfse"})
    reference_uri: ReferenceUri = "id"
    x509: X509Form = "chain"

    @property
    def form(self) -> DocumentForm:
        return DocumentForm(
            version=self.version,
            namespace=self.document_namespace,
            item_format=self.item_format,
            aliquota_format=self.aliquota_format,
            date_format=self.date_format,
        )

    def call(self, operation: str) -> OperationCall:
        """The operation as this family spells it (KeyError for an unknown operation)."""
        soap_operation, request, response = OPERATION_NAMES[operation]
        override = self.operations.get(operation, OperationDialect())  # type: ignore[call-overload]
        name = override.name or soap_operation
        fields = {"namespace": self.wsdl_namespace, "operation": name, "request": request}
        action = override.soap_action if override.soap_action is not None else self.soap_action
        return OperationCall(
            operation=name,
            request_element=request,
            response_element=response,
            wrapper=(override.wrapper or self.wrapper).format(**fields),
            soap_action=None if action is None else action.format(**fields),
            answer=(override.answer if override.answer is not None else self.answer).format(
                **fields
            ),
            signed=operation in self.signed_operations,
        )


PLAIN_ABRASF_2_04: Final = AbrasfDialect()
