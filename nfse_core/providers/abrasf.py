"""ABRASF SOAP client: one client for every provider family, each spoken from its dialect.

A family's dialect (nfse_core.providers.dialect, data from the registry) says how its web service
wants the documents: the wrapper element of each operation, the cabecalho and the parts (escaped
text, CDATA or inline XML), the SOAPAction, where the answer is and which requests are signed.
Plain ABRASF 2.04 is `{ns}{Operation}Request` holding the `cabecalho` and the document as escaped
XML text, the answer as `outputXML` text. Answers, escaped or inline, are read with the hardened
parser only; an escaped answer keeps its own encoding declaration out of the way (the text is
already characters). Nothing here raises for a provider problem: every call returns one of the
port's values (see nfse_core.providers.port), and every call has a timeout. POSTs are never
retried here: GerarNfse is not idempotent, the issuance service decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

import requests
from lxml import etree

from nfse_core.domain.rules import FISCAL_TZ
from nfse_core.providers.deadline import CallDeadline, ProviderConnection, retry_after_of
from nfse_core.providers.dialect import PLAIN_ABRASF_2_04, AbrasfDialect, OperationCall
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
from nfse_core.xml.builder import to_bytes
from nfse_core.xml.documents import build_cancelar_nfse_envio, build_consultar_nfse_rps_envio
from nfse_core.xml.forms import ABRASF_DOCUMENT_NS as NFSE_NS
from nfse_core.xml.safe import UnsafeXml, parse_untrusted

if TYPE_CHECKING:
    from nfse_core.providers.plugin import RequestSigner
    from nfse_core.providers.registry import ResolvedProvider

__all__ = ["build_cancelar_nfse_envio", "build_consultar_nfse_rps_envio"]

log = logging.getLogger(__name__)

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
_SOAP_NS = {"1.1": SOAP11_NS, "1.2": SOAP12_NS}
_CONTENT_TYPE = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}
DEFAULT_MAX_ANSWER_BYTES: Final = 5_000_000


def _any(path: str) -> str:
    """ElementPath matching `path` in any namespace: providers disagree on qualifying answers."""
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


# --------------------------------------------------------------------------- request documents


def cabecalho_xml(
    versao: str = "2.04", versao_dados: str | None = None, namespace: str = NFSE_NS
) -> str:
    """The cabecalho part: `<cabecalho versao=...><versaoDados>...` in the documents' namespace."""
    root = etree.Element(f"{{{namespace}}}cabecalho", versao=versao, nsmap={None: namespace})  # type: ignore[dict-item]
    etree.SubElement(root, f"{{{namespace}}}versaoDados").text = versao_dados or versao
    return etree.tostring(root, encoding="unicode")


def _document_text(document: bytes) -> str:
    """The document as nfseDadosMsg text, without its XML declaration."""
    text = document.decode("utf-8").lstrip("\ufeff")
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end != -1:
            text = text[end + 2 :]
    return text.lstrip()


def _part(parent: etree._Element, name: str, xml_text: str, form: str, ns: str | None) -> None:
    """One part of the request: the XML as escaped text, as CDATA, or inline elements."""
    part = etree.SubElement(parent, f"{{{ns}}}{name}" if ns else name)
    if form == "inline":
        part.append(parse_untrusted(xml_text.encode("utf-8")))
    elif form == "cdata":
        part.text = etree.CDATA(xml_text)
    else:  # escaped: lxml escapes the text on output
        part.text = xml_text


def build_envelope(
    operation: str,
    document: bytes,
    dialect: AbrasfDialect = PLAIN_ABRASF_2_04,
) -> bytes:
    """The SOAP request of `operation` (gerar_nfse, consultar_nfse_por_rps...) in the dialect's
    shape: its wrapper, cabecalho and data parts, in its SOAP version."""
    call = dialect.call(operation)
    soap = _SOAP_NS[dialect.soap_version]
    ns = dialect.wsdl_namespace
    envelope = etree.Element(f"{{{soap}}}Envelope", nsmap={"soap": soap, dialect.wsdl_prefix: ns})
    body = etree.SubElement(envelope, f"{{{soap}}}Body")
    request = etree.SubElement(body, f"{{{ns}}}{call.wrapper}")
    part_ns = ns if dialect.parts_qualified else None
    if dialect.header_part is not None and dialect.cabecalho_versao is not None:
        cabecalho = cabecalho_xml(
            dialect.cabecalho_versao, dialect.versao_dados, dialect.document_namespace
        )
        _part(request, dialect.header_part, cabecalho, dialect.part_form, part_ns)
    _part(request, dialect.data_part, _document_text(document), dialect.part_form, part_ns)
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


def _without_declaration(text: str) -> str:
    """Escaped XML text without its own declaration: the text is already characters, so an
    `encoding="ISO-8859-1"` there no longer describes anything (re-encoding it to UTF-8 and
    letting the parser believe the declaration would turn "Não" into "NÃ£o")."""
    text = text.lstrip("\ufeff").lstrip()
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end != -1:
            return text[end + 2 :].lstrip()
    return text


def _inline_answer(body: etree._Element, response_element: str | None) -> etree._Element:
    """The answer document sitting inline in the Body (a family without a holder element)."""
    found = body.find(f".//{{*}}{response_element}") if response_element else None
    if found is None:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"SOAP answer without {response_element}")
    return found


def extract_payload(
    envelope: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    answer: str = "outputXML",
    response_element: str | None = None,
) -> etree._Element:
    """The ABRASF document inside a SOAP answer; _AnswerProblem for faults and bad answers.

    `answer` names the element holding it (outputXML, return, GerarNfseResult...): its text is
    the escaped document, or its child the inline one. An empty `answer` means the document
    (`response_element`, e.g. GerarNfseResposta) sits inline in the Body."""
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
    if not answer:
        return _inline_answer(body, response_element)
    output = body.find(f".//{{*}}{answer}")
    if output is None:
        output = body.find(f".//{answer}")
    if output is None and response_element:
        # A provider that puts the answer document inline, without the holder its WSDL names.
        inline = body.find(f".//{{*}}{response_element}")
        if inline is not None:
            return inline
    if output is None:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"SOAP answer without {answer}")
    if len(output):  # inline document (some providers): already parsed by the hardened parser
        return output[0]
    text = _without_declaration(output.text or "")
    if not text:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"empty {answer}")
    try:
        return parse_untrusted(text.encode("utf-8"), max_bytes=max_bytes)
    except UnsafeXml as exc:
        raise _AnswerProblem(FailureKind.INVALID_ANSWER, f"unreadable {answer}: {exc}") from exc


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
    """The ABRASF web service of one municipality, in its family's dialect (implements the
    Provider port)."""

    def __init__(  # noqa: PLR0913 - keyword-only: the municipality's ProviderConfig settings
        self,
        endpoint: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        dialect: AbrasfDialect = PLAIN_ABRASF_2_04,
        operation_urls: Mapping[str, str] | None = None,
        duplicate_rps_codes: frozenset[str] = frozenset({"E10"}),
        rps_not_found_codes: frozenset[str] = frozenset({"E4"}),
        settle_seconds: float = 60.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        municipio: str | None = None,
        sign: RequestSigner | None = None,
    ) -> None:
        super().__init__(
            endpoint,
            session=session,
            timeout=timeout,
            settle_seconds=settle_seconds,
            max_answer_bytes=max_answer_bytes,
        )
        self.endpoint = endpoint
        self.dialect = dialect
        self.operation_urls = dict(operation_urls or {})
        self.duplicate_rps_codes = frozenset(duplicate_rps_codes)
        self.rps_not_found_codes = frozenset(rps_not_found_codes)
        self.municipio = municipio
        self._sign = sign

    @classmethod
    def for_provider(
        cls,
        provider: ResolvedProvider,
        *,
        session: requests.Session | None = None,
        sign: RequestSigner | None = None,
    ) -> AbrasfSoapClient:
        config = provider.config
        return cls(
            provider.endpoint,
            session=session,
            timeout=config.timeout.as_tuple(),
            dialect=config.dialect,
            operation_urls=provider.operation_urls,
            duplicate_rps_codes=config.duplicate_rps_codes,
            rps_not_found_codes=config.rps_not_found_codes,
            settle_seconds=config.settle_seconds,
            municipio=provider.municipio,
            sign=sign,
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
        document = to_bytes(self.consult_document(rps))
        if self.dialect.call("consultar_nfse_por_rps").signed:
            # A family that wants the consult signed (with the prestador's certificate).
            municipio = rps.municipio or self.municipio
            if self._sign is None or municipio is None:
                return TemporaryFailure(
                    "this provider wants the consult signed and no signer is configured",
                    FailureKind.INVALID_ANSWER,
                )
            document = self._sign(rps.cnpj, municipio, document)
        payload = self.call("consultar_nfse_por_rps", document)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_consultar_nfse_rps_resposta(payload, self.rps_not_found_codes)

    def cancelar_nfse(self, signed_pedido_xml: bytes) -> CancelamentoResult:
        payload = self.call("cancelar_nfse", signed_pedido_xml)
        if isinstance(payload, TemporaryFailure):
            return payload
        return parse_cancelar_nfse_resposta(payload)

    def consult_document(self, rps: RpsKey) -> etree._Element:
        """ConsultarNfseRpsEnvio in the family's form (its children in a Pedido where the family
        wants them so: ISSNet 2.04)."""
        document = build_consultar_nfse_rps_envio(rps, self.dialect.form)
        if self.dialect.consult_pedido:
            pedido = etree.Element(f"{{{self.dialect.document_namespace}}}Pedido")
            pedido.extend(list(document))
            document.append(pedido)
        return document

    # -- transport

    def url_of(self, operation: str) -> str:
        """Where `operation` is sent: its own URL where the family has one, else the endpoint."""
        return self.operation_urls.get(operation, self.endpoint)

    def headers(self, call: OperationCall) -> dict[str, str]:
        content_type = _CONTENT_TYPE[self.dialect.soap_version]
        headers = {"Accept": "text/xml, application/soap+xml"}
        if self.dialect.soap_version == "1.2":
            if call.soap_action:
                content_type += f'; action="{call.soap_action}"'
        elif call.soap_action is not None:
            headers["SOAPAction"] = f'"{call.soap_action}"'
        headers["Content-Type"] = content_type
        return headers

    def call(self, operation: str, document: bytes) -> etree._Element | TemporaryFailure:
        """Send one document; the ABRASF answer document, or why there is none."""
        call = self.dialect.call(operation)
        envelope = build_envelope(operation, document, self.dialect)
        started = time.monotonic()
        exchanged = self._exchange(call, self.url_of(operation), envelope, started)
        if isinstance(exchanged, TemporaryFailure):
            return exchanged
        response, body = exchanged
        status = response.status_code
        retry_after = retry_after_of(response)
        try:
            payload = extract_payload(
                body,
                max_bytes=self.max_answer_bytes,
                answer=call.answer,
                response_element=call.response_element,
            )
        except _AnswerProblem as problem:
            if problem.kind is not FailureKind.SOAP_FAULT and not 200 <= status < 300:
                # A 5xx page (HTML, empty...) says more by its status than by its body.
                problem = _AnswerProblem(FailureKind.HTTP_STATUS, f"HTTP {status}")
            return self._failed(
                call, started, problem.kind, problem.reason, status=status, retry_after=retry_after
            )
        if not 200 <= status < 300:
            # Whatever the body says, a non-2xx answer is not a definitive business answer.
            return self._failed(
                call,
                started,
                FailureKind.HTTP_STATUS,
                f"HTTP {status}",
                status=status,
                retry_after=retry_after,
            )
        log.info(
            "provider answered",
            extra={
                "operation": call.operation,
                "family": self.dialect.family,
                "endpoint": self.url_of(operation),
                "http_status": status,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return payload

    def _exchange(
        self, spec: OperationCall, url: str, envelope: bytes, started: float
    ) -> tuple[requests.Response, bytes] | TemporaryFailure:
        """POST the envelope and read the whole answer within the call's deadline."""
        deadline = CallDeadline(self.max_call_seconds)
        try:
            with deadline:
                response = self._session.post(
                    url,
                    data=envelope,
                    headers=self.headers(spec),
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
        spec: OperationCall,
        started: float,
        kind: FailureKind,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> TemporaryFailure:
        return self.failed(
            spec.operation, started, kind, reason, status=status, retry_after=retry_after
        )
