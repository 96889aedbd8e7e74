"""The provider families (dialects.py) at the door: each family's envelope, parts, action,
cabecalho, XSD, value formats and signatures are checked here, then the shared operations of
AbrasfService (one state, one set of faults for every family) act on the document, and the
answer goes back in the family's own shape.

A document passes through the operations in the ABRASF namespace with its RPS, whatever its
family's namespace; its answer is written back in the family's namespace and version.
"""

from __future__ import annotations

import copy
import re
from typing import Final

from cryptography import x509
from lxml import etree

from nfse_local.simulator import soap
from nfse_local.simulator.dialects import OPERATIONS, Dialect, ItemFormat, PartForm, ReferenceUri
from nfse_local.simulator.documents import NFSE_NS
from nfse_local.simulator.messages import (
    CABECALHO_INVALID,
    ITEM_FORMAT_INVALID,
    SCHEMA_INVALID,
    SIGNATURE_INVALID,
    Message,
)
from nfse_local.simulator.operations import AbrasfService
from nfse_local.simulator.parsing import (
    MAX_REQUEST_BYTES,
    UnreadableXml,
    family_schema_errors,
    parse_untrusted,
)
from nfse_local.simulator.signatures import DSIG_NS, SignatureProblem, verify_signatures
from nfse_local.simulator.soap import SOAP11_NS, SOAP12_NS, Reply, ReplyNow

_ANSWER_ROOTS: Final = {
    "GerarNfse": "GerarNfseResposta",
    "RecepcionarLoteRpsSincrono": "EnviarLoteRpsSincronoResposta",
    "ConsultarNfsePorRps": "ConsultarNfseRpsResposta",
    "CancelarNfse": "CancelarNfseResposta",
}
_DECLARATION: Final = re.compile(r"^\s*<\?xml[^>]*\?>")
_DIGITS_ITEM: Final = re.compile(r"^[0-9]{3,5}$")


class _Refused(Exception):
    """The request is answered with `messages` in the operation's answer document."""

    def __init__(self, messages: list[Message]) -> None:
        super().__init__("refused")
        self.messages = messages


class DialectService:
    """Answers a family's SOAP requests through the shared AbrasfService."""

    def __init__(self, service: AbrasfService) -> None:
        self.service = service

    def handle(self, body: bytes, dialect: Dialect, soap_action: str | None) -> Reply:
        """The answer to one request to `dialect`; raises Drop when the connection is cut."""
        return self.service.with_drip(self._handle(body, dialect, soap_action))

    def _handle(self, body: bytes, dialect: Dialect, soap_action: str | None) -> Reply:
        try:
            request = soap.read_envelope(body)
            operation = self._operation(request, dialect, soap_action)
            cabecalho = _part(request.element, "nfseCabecMsg", dialect, request.soap_ns)
            dados = _part(request.element, "nfseDadosMsg", dialect, request.soap_ns)
        except ReplyNow as now:
            return now.reply
        soap_ns = request.soap_ns
        try:
            document, certificates = self._checked(dialect, operation, cabecalho, dados)
        except _Refused as refused:
            answer = self.service._rejection(_ANSWER_ROOTS[operation], refused.messages)
            return _answer(dialect, soap_ns, operation, _to_family(answer, dialect))
        outcome = self.service.outcome_checked(soap_ns, operation, document, certificates)
        if isinstance(outcome, Reply):
            return outcome
        return _answer(dialect, soap_ns, operation, _to_family(outcome, dialect))

    def _operation(
        self, request: soap.SoapRequest, dialect: Dialect, soap_action: str | None
    ) -> str:
        """The operation of a request in the family's envelope: its SOAP version, wrapper
        element and SOAPAction; a Client Fault in an HTTP 500 answer (what ASMX and JAX-WS
        services answer for a body or action they do not bind) for anything else."""
        soap_ns = request.soap_ns
        version = "1.2" if soap_ns == SOAP12_NS else "1.1"
        if version not in dialect.soap_versions:
            raise ReplyNow(soap.fault(soap_ns, f"Client: SOAP {version} is not served here", 500))
        operation = _operation(dialect, request.element)
        if operation is None:
            name = etree.QName(request.element)
            raise ReplyNow(
                soap.fault(
                    soap_ns, f"Client: no operation {{{name.namespace}}}{name.localname} here", 500
                )
            )
        self.service.state.count_request(operation)
        action = (soap_action or "").strip().strip('"')
        expected = dialect.soap_actions[operation]
        # SOAP 1.2 carries the action in Content-Type; the header is checked when present.
        if (soap_ns == SOAP11_NS or action) and action != expected:
            raise ReplyNow(
                soap.fault(soap_ns, f"Client: SOAPAction {action!r} is not {expected!r}", 500)
            )
        return operation

    def _checked(
        self, dialect: Dialect, operation: str, cabecalho: bytes, dados: bytes
    ) -> tuple[etree._Element, list[x509.Certificate]]:
        """The request document in the ABRASF namespace and its signers' certificates, or
        _Refused with the family's codes."""
        try:
            cabec = parse_untrusted(cabecalho, max_bytes=MAX_REQUEST_BYTES)
            document = parse_untrusted(dados, max_bytes=MAX_REQUEST_BYTES)
        except UnreadableXml as exc:
            raise _Refused([(SCHEMA_INVALID[0], SCHEMA_INVALID[1], str(exc)[:200])]) from exc
        if (
            cabec.tag != f"{{{dialect.document_ns}}}cabecalho"
            or cabec.get("versao") != dialect.cabecalho_versao
            or (cabec.findtext(f"{{{dialect.document_ns}}}versaoDados") or "").strip()
            != dialect.version
        ):
            detail = f"esperado versao={dialect.cabecalho_versao}, versaoDados={dialect.version}"
            raise _Refused([(CABECALHO_INVALID[0], CABECALHO_INVALID[1], detail)])
        if etree.QName(document).namespace != dialect.document_ns:
            detail = f"Esperado o namespace {dialect.document_ns}."
            raise _Refused([(SCHEMA_INVALID[0], SCHEMA_INVALID[1], detail)])
        errors = family_schema_errors(document, dialect.schema)
        if errors:
            raise _Refused([(SCHEMA_INVALID[0], SCHEMA_INVALID[1], errors[0][:200])])
        if dialect.item_format is ItemFormat.DIGITS:
            for item in document.iter(f"{{{dialect.document_ns}}}ItemListaServico"):
                if not _DIGITS_ITEM.match((item.text or "").strip()):
                    raise _Refused([ITEM_FORMAT_INVALID])
        certificates: list[x509.Certificate] = []
        if operation in dialect.signed and self.service.verify_signatures:
            try:
                certificates = verify_signatures(
                    document,
                    namespace=dialect.document_ns,
                    empty_uri=dialect.reference_uri is ReferenceUri.EMPTY,
                )
            except SignatureProblem as exc:
                message = (SIGNATURE_INVALID[0], SIGNATURE_INVALID[1], str(exc)[:200])
                raise _Refused([message]) from exc
        return _to_abrasf(document, dialect), certificates


def _operation(dialect: Dialect, element: etree._Element) -> str | None:
    name = etree.QName(element)
    if name.namespace != dialect.wrapper_ns:
        return None
    for operation in OPERATIONS:
        if name.localname == dialect.wrapper(operation):
            return operation
    return None


def _part(wrapper: etree._Element, name: str, dialect: Dialect, soap_ns: str) -> bytes:
    """The XML a part carries, in the family's form; a Client Fault (HTTP 500, as ASMX and
    JAX-WS services answer a body they cannot bind) for a missing part or the other form."""
    part = wrapper.find(name)
    if part is None:
        raise ReplyNow(soap.fault(soap_ns, f"Client: {name} missing", 500))
    children = [child for child in part if isinstance(child.tag, str)]
    text = (part.text or "").strip()
    if dialect.part_form is PartForm.INLINE:
        if len(children) != 1 or text:
            raise ReplyNow(
                soap.fault(soap_ns, f"Client: {name} must hold its XML inline, not as text", 500)
            )
        standalone = copy.deepcopy(children[0])
        etree.cleanup_namespaces(standalone)
        return etree.tostring(standalone, encoding="UTF-8")
    if children or not text:
        raise ReplyNow(
            soap.fault(soap_ns, f"Client: {name} must hold its XML as escaped text", 500)
        )
    return _DECLARATION.sub("", text, count=1).encode("utf-8")


def _renamed(element: etree._Element, old: str, new: str) -> etree._Element:
    """A copy of `element` with every element of namespace `old` moved to `new` (declared as
    the default namespace at the top); elements of other namespaces are copied as they are."""

    def copy_into(source: etree._Element, parent: etree._Element | None) -> etree._Element:
        if not isinstance(source.tag, str):
            node = copy.deepcopy(source)
            if parent is not None:
                parent.append(node)
            return node
        qname = etree.QName(source)
        if qname.namespace != old:
            node = copy.deepcopy(source)
            if parent is not None:
                parent.append(node)
            return node
        tag = f"{{{new}}}{qname.localname}"
        if parent is None:
            node = etree.Element(tag, nsmap={None: new})  # type: ignore[dict-item]
        else:
            node = etree.SubElement(parent, tag)
        for key, value in source.attrib.items():
            node.set(key, value)
        node.text = source.text
        for child in source:
            copied = copy_into(child, node)
            copied.tail = child.tail
        return node

    return copy_into(element, None)


def _to_abrasf(document: etree._Element, dialect: Dialect) -> etree._Element:
    """The family's request document as the shared operations read it."""
    normal = _renamed(document, dialect.document_ns, NFSE_NS)
    if dialect.consult_in_pedido and etree.QName(normal).localname == "ConsultarNfseRpsEnvio":
        pedido = normal.find(f"{{{NFSE_NS}}}Pedido")
        if pedido is not None:
            for child in list(pedido):
                normal.append(child)
            normal.remove(pedido)
        for signature in normal.findall(f"{{{DSIG_NS}}}Signature"):
            normal.remove(signature)
    return normal


def _to_family(answer: etree._Element, dialect: Dialect) -> etree._Element:
    """An answer of the shared operations in the family's namespace and version."""
    document = copy.deepcopy(answer)
    if dialect.version != "2.04":
        for node in document.iter(f"{{{NFSE_NS}}}Nfse", f"{{{NFSE_NS}}}NfseCancelamento"):
            if node.get("versao") == "2.04":
                node.set("versao", dialect.version)
    if dialect.version == "2.02":
        # 2.02's tcDadosPrestador opens with IdentificacaoPrestador (2.04 dropped it).
        for inf in document.iter(f"{{{NFSE_NS}}}InfNfse"):
            prestador = inf.find(f"{{{NFSE_NS}}}PrestadorServico")
            declared = inf.find(
                f"{{{NFSE_NS}}}DeclaracaoPrestacaoServico/{{{NFSE_NS}}}"
                f"InfDeclaracaoPrestacaoServico/{{{NFSE_NS}}}Prestador"
            )
            if prestador is None or declared is None:
                continue
            if prestador.find(f"{{{NFSE_NS}}}IdentificacaoPrestador") is not None:
                continue
            ident = etree.Element(f"{{{NFSE_NS}}}IdentificacaoPrestador")
            for child in declared:
                ident.append(copy.deepcopy(child))
            prestador.insert(0, ident)
    return _renamed(document, NFSE_NS, dialect.document_ns)


def _answer(dialect: Dialect, soap_ns: str, operation: str, document: etree._Element) -> Reply:
    """The family's envelope answering `operation` with `document`."""
    envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
    body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
    response = etree.SubElement(
        body, f"{{{dialect.wrapper_ns}}}{operation}Response", nsmap={"ns2": dialect.wrapper_ns}
    )
    part = etree.SubElement(response, dialect.answer_part_name(operation))
    part.text = (dialect.answer_declaration or "") + etree.tostring(document, encoding="unicode")
    content_type = (
        "application/soap+xml; charset=utf-8" if soap_ns == SOAP12_NS else "text/xml; charset=utf-8"
    )
    return Reply(
        200, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
    )
