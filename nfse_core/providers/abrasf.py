"""ABRASF 2.04 SOAP client: document/literal with nfseCabecMsg + nfseDadosMsg, answers as values.

Requests follow the ABRASF WSDL: `{ns}{Operation}Request` holding two string parts, the
`cabecalho` and the document, both as escaped XML text. Answers come back as `outputXML` text
(or, with some providers, inline elements); both the envelope and the inner document are read
with the hardened parser only. Nothing here raises for a provider problem: every call returns
one of the port's values (see nfse_core.providers.port), and every call has a timeout.
POSTs are never retried here: GerarNfse is not idempotent, the issuance service decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import requests
from lxml import etree

from nfse_core.domain.rules import FISCAL_TZ
from nfse_core.providers.deadline import CallDeadline, ProviderConnection, retry_after_of
from nfse_core.providers.port import (
    CancelamentoResult,
    Cancelled,
    ConsultaResult,
    FailureKind,
    GerarNfseResult,
    Issued,
    LoteIssued,
    LoteResult,
    ProviderMessage,
    Rejected,
    RpsKey,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.providers.registry import ABRASF_WSDL_NS, ResolvedProvider
from nfse_core.xml.safe import UnsafeXml, parse_untrusted
from nfse_core.xml.schema import NFSE_NS, nfse_path

log = logging.getLogger(__name__)

SoapVersion = Literal["1.1", "1.2"]
SoapActionStyle = Literal["operation", "empty", "none"]

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
_SOAP_NS = {"1.1": SOAP11_NS, "1.2": SOAP12_NS}
_CONTENT_TYPE = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}
DEFAULT_MAX_ANSWER_BYTES: Final = 5_000_000


@dataclass(frozen=True, slots=True)
class AbrasfOperation:
    """One row of the operation table: SOAP operation, the documents in and out, signing."""

    soap_operation: str
    request_element: str
    response_element: str
    must_sign: bool


OPERATIONS: Final[dict[str, AbrasfOperation]] = {
    "gerar_nfse": AbrasfOperation("GerarNfse", "GerarNfseEnvio", "GerarNfseResposta", True),
    "recepcionar_lote_rps_sincrono": AbrasfOperation(
        "RecepcionarLoteRpsSincrono",
        "EnviarLoteRpsSincronoEnvio",
        "EnviarLoteRpsSincronoResposta",
        True,
    ),
    "consultar_nfse_por_rps": AbrasfOperation(
        "ConsultarNfsePorRps", "ConsultarNfseRpsEnvio", "ConsultarNfseRpsResposta", False
    ),
    "cancelar_nfse": AbrasfOperation(
        "CancelarNfse", "CancelarNfseEnvio", "CancelarNfseResposta", True
    ),
}


def _any(path: str) -> str:
    """ElementPath matching `path` in any namespace: providers disagree on qualifying answers."""
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


# --------------------------------------------------------------------------- request documents


def cabecalho_xml(versao: str = "2.04") -> str:
    root = etree.Element(nfse_path("cabecalho"), versao=versao, nsmap={None: NFSE_NS})  # type: ignore[dict-item]
    etree.SubElement(root, nfse_path("versaoDados")).text = versao
    return etree.tostring(root, encoding="unicode")


def _cpf_cnpj(parent: etree._Element, document: str) -> None:
    holder = etree.SubElement(parent, nfse_path("CpfCnpj"))
    etree.SubElement(holder, nfse_path("Cpf" if len(document) == 11 else "Cnpj")).text = document


def build_consultar_nfse_rps_envio(rps: RpsKey) -> etree._Element:
    """ConsultarNfseRpsEnvio (unsigned in ABRASF 2.04)."""
    root = etree.Element(nfse_path("ConsultarNfseRpsEnvio"), nsmap={None: NFSE_NS})  # type: ignore[dict-item]
    ident = etree.SubElement(root, nfse_path("IdentificacaoRps"))
    etree.SubElement(ident, nfse_path("Numero")).text = str(rps.numero)
    etree.SubElement(ident, nfse_path("Serie")).text = rps.serie
    etree.SubElement(ident, nfse_path("Tipo")).text = str(rps.tipo)
    prestador = etree.SubElement(root, nfse_path("Prestador"))
    _cpf_cnpj(prestador, rps.cnpj)
    if rps.inscricao_municipal:
        etree.SubElement(prestador, nfse_path("InscricaoMunicipal")).text = rps.inscricao_municipal
    return root


def build_cancelar_nfse_envio(  # noqa: PLR0913 - keyword-only: the fields of the Pedido
    *,
    numero_nfse: str,
    cnpj: str,
    inscricao_municipal: str | None,
    codigo_municipio: str,
    codigo_cancelamento: int,
    pedido_id: str,
) -> etree._Element:
    """CancelarNfseEnvio, ready for XmlSigner (the signature references InfPedidoCancelamento@Id).

    codigo_cancelamento (tsCodigoCancelamentoNfse): 1 erro na emissão, 2 serviço não prestado,
    3 erro de assinatura, 4 duplicidade da nota, 5 erro de processamento.
    """
    if codigo_cancelamento not in range(1, 6):
        raise ValueError("codigo_cancelamento must be 1..5")
    root = etree.Element(nfse_path("CancelarNfseEnvio"), nsmap={None: NFSE_NS})  # type: ignore[dict-item]
    pedido = etree.SubElement(root, nfse_path("Pedido"))
    inf = etree.SubElement(pedido, nfse_path("InfPedidoCancelamento"), Id=pedido_id)
    ident = etree.SubElement(inf, nfse_path("IdentificacaoNfse"))
    etree.SubElement(ident, nfse_path("Numero")).text = numero_nfse
    _cpf_cnpj(ident, cnpj)
    if inscricao_municipal:
        etree.SubElement(ident, nfse_path("InscricaoMunicipal")).text = inscricao_municipal
    etree.SubElement(ident, nfse_path("CodigoMunicipio")).text = codigo_municipio
    etree.SubElement(inf, nfse_path("CodigoCancelamento")).text = str(codigo_cancelamento)
    return root


def _document_text(document: bytes) -> str:
    """The document as nfseDadosMsg text, without its XML declaration."""
    text = document.decode("utf-8").lstrip("\ufeff")
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end != -1:
            text = text[end + 2 :]
    return text.lstrip()


def build_envelope(
    operation: str,
    document: bytes,
    *,
    soap_version: SoapVersion = "1.1",
    namespace: str = ABRASF_WSDL_NS,
    versao: str = "2.04",
) -> bytes:
    """The SOAP request: `{namespace}{operation}Request` with nfseCabecMsg and nfseDadosMsg."""
    soap = _SOAP_NS[soap_version]
    envelope = etree.Element(f"{{{soap}}}Envelope", nsmap={"soap": soap, "nfse": namespace})
    body = etree.SubElement(envelope, f"{{{soap}}}Body")
    request = etree.SubElement(body, f"{{{namespace}}}{operation}Request")
    # The parts are unqualified and carry XML as text: lxml escapes it on output.
    etree.SubElement(request, "nfseCabecMsg").text = cabecalho_xml(versao)
    etree.SubElement(request, "nfseDadosMsg").text = _document_text(document)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


# --------------------------------------------------------------------------- answers


class _AnswerProblem(Exception):
    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _fault_text(fault: etree._Element) -> str:
    for path in ("faultstring", "{*}Reason/{*}Text", "{*}faultstring"):
        node = fault.find(path)
        if node is not None and node.text:
            return node.text.strip()
    return "SOAP Fault without a reason"


def extract_payload(
    envelope: bytes, *, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES
) -> etree._Element:
    """The ABRASF document inside a SOAP answer; _AnswerProblem for faults and bad answers."""
    try:
        root = parse_untrusted(envelope, max_bytes=max_bytes)
    except UnsafeXml as exc:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"unreadable SOAP answer: {exc}") from exc
    if etree.QName(root).localname != "Envelope":
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "the answer is not a SOAP envelope")
    body = root.find("{*}Body")
    if body is None or len(body) == 0:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "SOAP answer without a Body")
    first = body[0]
    if etree.QName(first).localname == "Fault":
        raise _AnswerProblem(FailureKind.SOAP_FAULT, f"SOAP Fault: {_fault_text(first)}")
    output = first.find(".//{*}outputXML")
    if output is None:
        output = body.find(".//outputXML")
    if output is None:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "SOAP answer without outputXML")
    if len(output):  # inline document (some providers): already parsed by the hardened parser
        return output[0]
    text = (output.text or "").strip()
    if not text:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "empty outputXML")
    try:
        return parse_untrusted(text.encode("utf-8"), max_bytes=max_bytes)
    except UnsafeXml as exc:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"unreadable outputXML: {exc}") from exc


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(_any(path))
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def _messages(payload: etree._Element) -> tuple[ProviderMessage, ...]:
    out: list[ProviderMessage] = []
    for lista in ("ListaMensagemRetorno", "ListaMensagemRetornoLote"):
        for node in payload.iterfind(f".//{_any(lista)}/{{*}}MensagemRetorno"):
            out.append(
                ProviderMessage(
                    codigo=_text(node, "Codigo") or "",
                    mensagem=_text(node, "Mensagem") or "",
                    correcao=_text(node, "Correcao"),
                )
            )
    return tuple(out)


def _has_error_list(payload: etree._Element) -> bool:
    return any(
        payload.find(f".//{_any(name)}") is not None or etree.QName(payload).localname == name
        for name in ("ListaMensagemRetorno", "ListaMensagemRetornoLote")
    )


def _parse_datetime(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=FISCAL_TZ)


def issued_from_comp_nfse(comp: etree._Element, protocol: str | None = None) -> Issued:
    inf = comp.find(_any("Nfse/InfNfse"))
    if inf is None:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "CompNfse without Nfse/InfNfse")
    numero = _text(inf, "Numero")
    codigo = _text(inf, "CodigoVerificacao")
    emissao = _text(inf, "DataEmissao")
    if numero is None or codigo is None or emissao is None:
        raise _AnswerProblem(
            FailureKind.INVALID_ANSWER, "InfNfse lacks Numero, CodigoVerificacao or DataEmissao"
        )
    try:
        issued_at = _parse_datetime(emissao)
    except ValueError as exc:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"bad DataEmissao {emissao!r}") from exc
    return Issued(
        nfse_number=numero,
        verification_code=codigo,
        protocol=protocol,
        issued_at=issued_at,
        raw_xml=etree.tostring(comp, encoding="UTF-8", xml_declaration=True),
    )


def _comp_nfses(payload: etree._Element) -> Iterator[etree._Element]:
    if etree.QName(payload).localname == "CompNfse":
        yield payload
    yield from payload.iterfind(f".//{_any('CompNfse')}")


def _raw(payload: etree._Element) -> bytes:
    return etree.tostring(payload, encoding="UTF-8", xml_declaration=True)


def parse_gerar_nfse_resposta(
    payload: etree._Element, duplicate_rps_codes: frozenset[str] = frozenset({"E10"})
) -> GerarNfseResult:
    try:
        comps = list(_comp_nfses(payload))
        if comps:
            return issued_from_comp_nfse(comps[0], _text(payload, "Protocolo"))
        if _has_error_list(payload):
            return _rejected(payload, duplicate_rps_codes)
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "answer has neither NFS-e nor messages")
    except _AnswerProblem as problem:
        return TemporaryFailure(problem.reason, problem.kind)


def _rejected(payload: etree._Element, duplicate_rps_codes: frozenset[str]) -> Rejected:
    messages = _messages(payload)
    return Rejected(
        messages=messages,
        duplicate_rps=any(m.codigo in duplicate_rps_codes for m in messages),
        raw_xml=_raw(payload),
    )


def parse_lote_rps_sincrono_resposta(
    payload: etree._Element, duplicate_rps_codes: frozenset[str] = frozenset({"E10"})
) -> LoteResult:
    try:
        protocol = _text(payload, "Protocolo")
        comps = list(_comp_nfses(payload))
        if comps:
            return LoteIssued(
                protocol=protocol,
                numero_lote=_text(payload, "NumeroLote"),
                nfses=tuple(issued_from_comp_nfse(comp, protocol) for comp in comps),
                raw_xml=_raw(payload),
            )
        if _has_error_list(payload):
            return _rejected(payload, duplicate_rps_codes)
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "answer has neither NFS-e nor messages")
    except _AnswerProblem as problem:
        return TemporaryFailure(problem.reason, problem.kind)


def parse_consultar_nfse_rps_resposta(
    payload: etree._Element, not_found_codes: frozenset[str] = frozenset({"E4"})
) -> ConsultaResult:
    """Issued, RpsNotFound only when every message is the provider's own "RPS not found" code,
    or TemporaryFailure (INCONCLUSIVE) for any other message list: an internal error, a
    "try later" or an unknown code proves nothing about whether the NFS-e exists."""
    try:
        comps = list(_comp_nfses(payload))
        if comps:
            return issued_from_comp_nfse(comps[0])
        if _has_error_list(payload):
            messages = _messages(payload)
            if messages and all(m.codigo in not_found_codes for m in messages):
                return RpsNotFound(messages)
            summary = "; ".join(str(m) for m in messages) or "an empty message list"
            raise _AnswerProblem(FailureKind.INCONCLUSIVE, f"consult undecided: {summary}")
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, "answer has neither NFS-e nor messages")
    except _AnswerProblem as problem:
        return TemporaryFailure(problem.reason, problem.kind)


def parse_cancelar_nfse_resposta(payload: etree._Element) -> CancelamentoResult:
    confirmacao = payload.find(f".//{_any('NfseCancelamento/Confirmacao')}")
    if confirmacao is not None:
        data_hora = _text(confirmacao, "DataHora")
        try:
            cancelled_at = _parse_datetime(data_hora) if data_hora else None
        except ValueError:
            cancelled_at = None
        return Cancelled(
            nfse_number=_text(confirmacao, "Pedido/InfPedidoCancelamento/IdentificacaoNfse/Numero"),
            cancelled_at=cancelled_at,
            raw_xml=_raw(payload),
        )
    if _has_error_list(payload):
        return _rejected(payload, frozenset())
    return TemporaryFailure(
        "answer has neither a confirmation nor messages", FailureKind.INVALID_ANSWER
    )


# --------------------------------------------------------------------------- the client


class AbrasfSoapClient(ProviderConnection):
    """The ABRASF 2.04 web service of one municipality (implements the Provider port)."""

    def __init__(  # noqa: PLR0913 - keyword-only: the municipality's ProviderConfig settings
        self,
        endpoint: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        soap_version: SoapVersion = "1.1",
        soap_action_style: SoapActionStyle = "operation",
        namespace: str = ABRASF_WSDL_NS,
        versao: str = "2.04",
        duplicate_rps_codes: frozenset[str] = frozenset({"E10"}),
        rps_not_found_codes: frozenset[str] = frozenset({"E4"}),
        settle_seconds: float = 60.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        super().__init__(
            endpoint,
            session=session,
            timeout=timeout,
            settle_seconds=settle_seconds,
            max_answer_bytes=max_answer_bytes,
        )
        self.endpoint = endpoint
        self.soap_version: SoapVersion = soap_version
        self.soap_action_style: SoapActionStyle = soap_action_style
        self.namespace = namespace
        self.versao = versao
        self.duplicate_rps_codes = frozenset(duplicate_rps_codes)
        self.rps_not_found_codes = frozenset(rps_not_found_codes)

    @classmethod
    def for_provider(
        cls, provider: ResolvedProvider, *, session: requests.Session | None = None
    ) -> AbrasfSoapClient:
        config = provider.config
        return cls(
            provider.endpoint,
            session=session,
            timeout=config.timeout.as_tuple(),
            soap_version=config.soap_version,
            soap_action_style=config.soap_action_style,
            namespace=config.namespace,
            versao=config.version,
            duplicate_rps_codes=config.duplicate_rps_codes,
            rps_not_found_codes=config.rps_not_found_codes,
            settle_seconds=config.settle_seconds,
        )

    # -- operations

    def gerar_nfse(self, signed_xml: bytes) -> GerarNfseResult:
        payload = self.call("gerar_nfse", signed_xml)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_gerar_nfse_resposta(payload, self.duplicate_rps_codes)

    def recepcionar_lote_rps_sincrono(self, signed_lote_xml: bytes) -> LoteResult:
        payload = self.call("recepcionar_lote_rps_sincrono", signed_lote_xml)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_lote_rps_sincrono_resposta(payload, self.duplicate_rps_codes)

    def consultar_nfse_por_rps(self, rps: RpsKey) -> ConsultaResult:
        document = etree.tostring(build_consultar_nfse_rps_envio(rps), encoding="UTF-8")
        payload = self.call("consultar_nfse_por_rps", document)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_consultar_nfse_rps_resposta(payload, self.rps_not_found_codes)

    def cancelar_nfse(self, signed_pedido_xml: bytes) -> CancelamentoResult:
        payload = self.call("cancelar_nfse", signed_pedido_xml)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_cancelar_nfse_resposta(payload)

    # -- transport

    def headers(self, soap_operation: str) -> dict[str, str]:
        action = f"{self.namespace}/{soap_operation}"
        content_type = _CONTENT_TYPE[self.soap_version]
        headers = {"Accept": "text/xml, application/soap+xml"}
        if self.soap_version == "1.2":
            if self.soap_action_style == "operation":
                content_type += f'; action="{action}"'
        elif self.soap_action_style == "operation":
            headers["SOAPAction"] = f'"{action}"'
        elif self.soap_action_style == "empty":
            headers["SOAPAction"] = '""'
        headers["Content-Type"] = content_type
        return headers

    def call(self, operation: str, document: bytes) -> etree._Element | TemporaryFailure:
        """Send one document; the ABRASF answer document, or why there is none."""
        spec = OPERATIONS[operation]
        envelope = build_envelope(
            spec.soap_operation,
            document,
            soap_version=self.soap_version,
            namespace=self.namespace,
            versao=self.versao,
        )
        started = time.monotonic()
        exchanged = self._exchange(spec, envelope, started)
        if isinstance(exchanged, TemporaryFailure):
            return exchanged
        response, body = exchanged
        status = response.status_code
        retry_after = retry_after_of(response)
        try:
            payload = extract_payload(body, max_bytes=self.max_answer_bytes)
        except _AnswerProblem as problem:
            if problem.kind is not FailureKind.SOAP_FAULT and not 200 <= status < 300:
                # A 5xx page (HTML, empty...) says more by its status than by its body.
                problem = _AnswerProblem(FailureKind.HTTP_STATUS, f"HTTP {status}")
            return self._failed(
                spec, started, problem.kind, problem.reason, status=status, retry_after=retry_after
            )
        if not 200 <= status < 300:
            # Whatever the body says, a non-2xx answer is not a definitive business answer.
            return self._failed(
                spec,
                started,
                FailureKind.HTTP_STATUS,
                f"HTTP {status}",
                status=status,
                retry_after=retry_after,
            )
        log.info(
            "provider answered",
            extra={
                "operation": spec.soap_operation,
                "endpoint": self.endpoint,
                "http_status": status,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return payload

    def _exchange(
        self, spec: AbrasfOperation, envelope: bytes, started: float
    ) -> tuple[requests.Response, bytes] | TemporaryFailure:
        """POST the envelope and read the whole answer within the call's deadline."""
        deadline = CallDeadline(self.max_call_seconds)
        try:
            with deadline:
                response = self._session.post(
                    self.endpoint,
                    data=envelope,
                    headers=self.headers(spec.soap_operation),
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    body = self._read_body(response, started)
                finally:
                    response.close()
        except requests.Timeout as exc:
            return self._failed(
                spec, started, FailureKind.TIMEOUT, f"timeout: {type(exc).__name__}"
            )
        except (requests.RequestException, _AnswerProblem) as exc:
            if deadline.expired:
                # The connection was cut at the call's deadline (a provider holding it open).
                return self._failed(
                    spec, started, FailureKind.TIMEOUT, "answer not complete by the call deadline"
                )
            if isinstance(exc, _AnswerProblem):
                return self._failed(spec, started, exc.kind, exc.reason)
            return self._failed(
                spec, started, FailureKind.CONNECTION, f"connection failed: {type(exc).__name__}"
            )
        return response, body

    def _read_body(self, response: requests.Response, started: float) -> bytes:
        # The read timeout bounds each socket read; this bounds the whole answer, so a provider
        # trickling bytes cannot hold a worker for longer than connect + read seconds.
        deadline = started + self.timeout[0] + self.timeout[1]
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise _AnswerProblem(FailureKind.INVALID_ANSWER, "answer larger than the limit")
            if time.monotonic() > deadline:
                raise _AnswerProblem(FailureKind.TIMEOUT, "answer not complete before the deadline")
            chunks.append(chunk)
        return b"".join(chunks)

    def _failed(  # noqa: PLR0913 - the failure's fields, for its log line and result
        self,
        spec: AbrasfOperation,
        started: float,
        kind: FailureKind,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> TemporaryFailure:
        return self.failed(
            spec.soap_operation, started, kind, reason, status=status, retry_after=retry_after
        )
