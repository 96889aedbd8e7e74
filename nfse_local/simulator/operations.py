"""The ABRASF 2.04 operations the simulator answers: GerarNfse, RecepcionarLoteRpsSincrono,
ConsultarNfsePorRps and CancelarNfse, each behind the checks and the injected faults."""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial

from cryptography import x509
from lxml import etree

from nfse_local.simulator import soap
from nfse_local.simulator.checks import certificates_match, check_document
from nfse_local.simulator.documents import (
    any_path,
    build_nfse,
    cancelamento,
    identified_key,
    leaf,
    message_list,
    new_document,
    nfse_tag,
    rps_key,
    values_consistent,
)
from nfse_local.simulator.faults import Forced
from nfse_local.simulator.injection import FaultInjector
from nfse_local.simulator.messages import (
    ALREADY_CANCELLED,
    CERT_MISMATCH,
    CONSULT_INTERNAL_ERROR,
    DUPLICATE_RPS,
    FORCED_REJECT,
    NFSE_NOT_FOUND,
    RPS_NOT_FOUND,
    SCHEMA_INVALID,
    UNKNOWN_OPERATION,
    VALUES_INCONSISTENT,
    Message,
)
from nfse_local.simulator.parsing import UnreadableXml
from nfse_local.simulator.soap import Drop, Reply, ReplyNow
from nfse_local.simulator.state import BRT, SimulatorState

Operation = Callable[[etree._Element, Forced | None], etree._Element]

# The answer document of each operation, also for the rejections of the checks.
_ANSWER_ROOTS = {
    "GerarNfse": "GerarNfseResposta",
    "RecepcionarLoteRpsSincrono": "EnviarLoteRpsSincronoResposta",
    "ConsultarNfsePorRps": "ConsultarNfseRpsResposta",
    "CancelarNfse": "CancelarNfseResposta",
}


class AbrasfService:
    """Answers SOAP requests from the simulator's state, with its checks and faults."""

    def __init__(
        self,
        state: SimulatorState,
        stop: threading.Event,
        *,
        verify_signatures: bool,
        require_cert_cnpj_match: bool,
    ) -> None:
        self.state = state
        self.faults = FaultInjector(state, stop)
        self.verify_signatures = verify_signatures
        self.require_cert_cnpj_match = require_cert_cnpj_match
        # The signers' certificates of a document a family's gate checked (outcome_checked).
        self._local = threading.local()

    def handle(self, body: bytes) -> Reply:
        """The answer to one SOAP request; raises Drop when the connection is to be cut."""
        return self.with_drip(self._handle(body))

    def with_drip(self, reply: Reply) -> Reply:
        """`reply`, to be dripped when the drip fault rolls for it."""
        faults = self.state.faults
        if self.state.roll(faults.drip_rate):
            self.state.count_fault("drip")
            reply.drip = (faults.drip_interval_seconds, faults.drip_bytes)
        return reply

    def _handle(self, body: bytes) -> Reply:
        try:
            request = soap.read_envelope(body)
        except ReplyNow as now:
            return now.reply
        soap_ns, operation = request.soap_ns, request.operation
        self.state.count_request(operation)
        try:
            document = soap.message_of(request)
        except ReplyNow as now:
            return now.reply
        except UnreadableXml:
            return soap.answer(soap_ns, operation, self._error_doc(operation, [SCHEMA_INVALID]))
        return self._answer(soap_ns, operation, document)

    def _answer(self, soap_ns: str, operation: str, document: etree._Element) -> Reply:
        """The answer to a readable request: per-request faults first (the provider is down or
        slow before it looks at the RPS), then the operation."""
        outcome = self.outcome(soap_ns, operation, document)
        if isinstance(outcome, Reply):
            return outcome
        return soap.answer(soap_ns, operation, outcome)

    def outcome_checked(
        self,
        soap_ns: str,
        operation: str,
        document: etree._Element,
        certificates: list[x509.Certificate],
    ) -> Reply | etree._Element:
        """`outcome` of a document a family's gate has already checked (root, XSD, signatures):
        the operations skip those checks and take `certificates` as the signers'."""
        self._local.checked = certificates
        try:
            return self.outcome(soap_ns, operation, document)
        finally:
            self._local.checked = None

    def outcome(
        self, soap_ns: str, operation: str, document: etree._Element
    ) -> Reply | etree._Element:
        """The answer document of `operation` for `document`, or an HTTP-level Reply (a fault
        injected before the operation); raises Drop when the connection is to be cut."""
        forced = self.faults.forced_outcome(document)
        try:
            self.faults.before_request(soap_ns)
        except ReplyNow as now:
            return now.reply
        if forced is Forced.TEMPORARY:
            self.state.count_fault("temporary")
            return Reply(
                503, b"Service Unavailable (simulated)", "text/plain", {"Retry-After": "1"}
            )
        if forced is Forced.SOAP_FAULT:
            self.state.count_fault("soap_fault")
            return soap.fault(soap_ns, "Server: simulated fault")
        if forced is Forced.TIMEOUT:
            self.faults.hang()

        handler = self._operations().get(operation)
        if handler is None:
            return self._error_doc(operation, [UNKNOWN_OPERATION])
        return handler(document, forced)

    def _operations(self) -> dict[str, Operation]:
        return {
            "GerarNfse": self._gerar_nfse,
            "RecepcionarLoteRpsSincrono": self._lote_sincrono,
            "ConsultarNfsePorRps": self._consultar_por_rps,
            "CancelarNfse": self._cancelar,
        }

    # -- checks shared by the operations

    def _check(
        self, document: etree._Element, expected_root: str, signed: bool
    ) -> tuple[list[Message], list[x509.Certificate]]:
        checked: list[x509.Certificate] | None = getattr(self._local, "checked", None)
        if checked is not None:
            if document.tag != nfse_tag(expected_root):
                return [(SCHEMA_INVALID[0], f"Esperado {expected_root}.", None)], []
            return [], checked
        return check_document(document, expected_root, signed=signed, verify=self.verify_signatures)

    def _cert_matches(self, certificates: list[x509.Certificate], cnpj: str) -> bool:
        enforce = self.verify_signatures and self.require_cert_cnpj_match
        return certificates_match(certificates, cnpj, enforce=enforce)

    # -- operations

    def _gerar_nfse(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "GerarNfseEnvio", signed=True)
        if problems:
            return self._rejection("GerarNfseResposta", problems)
        rps = document.find(nfse_tag("Rps"))
        assert rps is not None  # the XSD requires it
        key, cnpj = rps_key(rps)
        if not self._cert_matches(certificates, cnpj):
            return self._rejection("GerarNfseResposta", [CERT_MISMATCH])
        if forced is Forced.REJECT:
            return self._rejection("GerarNfseResposta", [FORCED_REJECT])
        if not values_consistent(rps):
            return self._rejection("GerarNfseResposta", [VALUES_INCONSISTENT])
        stored, created = self.state.issue(key, partial(build_nfse, rps=rps))
        if not created:
            return self._rejection("GerarNfseResposta", [DUPLICATE_RPS])
        faults = self.state.faults
        lose = (forced is Forced.LOST and self.state.first_loss(key)) or self.state.roll(
            faults.lost_rate
        )
        if lose:
            self.state.count_fault("lost")
            raise Drop
        if self.state.roll(faults.issued_then_timeout_rate):
            # Issued, then silence: the client's read times out, the NFS-e exists.
            self.state.count_fault("issued_then_timeout")
            self.faults.silence(faults.timeout_seconds)
        answer = new_document("GerarNfseResposta")
        lista = etree.SubElement(answer, nfse_tag("ListaNfse"))
        lista.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _lote_sincrono(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "EnviarLoteRpsSincronoEnvio", signed=True)
        if problems:
            return self._rejection("EnviarLoteRpsSincronoResposta", problems)
        if forced is Forced.REJECT:
            return self._rejection("EnviarLoteRpsSincronoResposta", [FORCED_REJECT])
        rps_list = document.findall(any_path("LoteRps/ListaRps/Rps"))
        keys = [rps_key(rps) for rps in rps_list]
        if any(not self._cert_matches(certificates, cnpj) for _, cnpj in keys):
            return self._rejection("EnviarLoteRpsSincronoResposta", [CERT_MISMATCH])
        if not all(values_consistent(rps) for rps in rps_list):
            return self._rejection("EnviarLoteRpsSincronoResposta", [VALUES_INCONSISTENT])
        answer = new_document("EnviarLoteRpsSincronoResposta")
        numero_lote = document.find(any_path("LoteRps/NumeroLote"))
        leaf(answer, "NumeroLote", numero_lote.text or "0" if numero_lote is not None else "0")
        leaf(answer, "DataRecebimento", datetime.now(BRT).replace(microsecond=0).isoformat())
        leaf(answer, "Protocolo", secrets.token_hex(8))
        duplicates = [key for key, _ in keys if self.state.find(key) is not None]
        if duplicates:
            lista = etree.SubElement(answer, nfse_tag("ListaMensagemRetornoLote"))
            for _cnpj, numero, serie, tipo in duplicates:
                item = etree.SubElement(lista, nfse_tag("MensagemRetorno"))
                ident = etree.SubElement(item, nfse_tag("IdentificacaoRps"))
                leaf(ident, "Numero", str(numero))
                leaf(ident, "Serie", serie)
                leaf(ident, "Tipo", str(tipo))
                leaf(item, "Codigo", DUPLICATE_RPS[0])
                leaf(item, "Mensagem", DUPLICATE_RPS[1])
            self.state.count_duplicates(len(duplicates))
            return answer
        lista_nfse = etree.SubElement(answer, nfse_tag("ListaNfse"))
        for rps, (key, _) in zip(rps_list, keys, strict=True):
            stored, _created = self.state.issue(key, partial(build_nfse, rps=rps))
            lista_nfse.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _consultar_por_rps(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        self.state.count_consult()
        problems, _ = self._check(document, "ConsultarNfseRpsEnvio", signed=False)
        if problems:
            return self._rejection("ConsultarNfseRpsResposta", problems, count=False)
        faults = self.state.faults
        if self.state.roll(faults.consult_internal_error_rate):
            # "Not found" and "we failed" in one list, whether or not the NFS-e exists.
            self.state.count_fault("consult_internal_error")
            return self._rejection(
                "ConsultarNfseRpsResposta", [RPS_NOT_FOUND, CONSULT_INTERNAL_ERROR], count=False
            )
        ident = document.find(nfse_tag("IdentificacaoRps"))
        cnpj = document.findtext(any_path("Prestador/CpfCnpj/Cnpj")) or document.findtext(
            any_path("Prestador/CpfCnpj/Cpf")
        )
        assert ident is not None and cnpj is not None  # the XSD requires both
        stored = self.state.find(identified_key(cnpj.strip(), ident))
        lag = faults.consult_lag_seconds
        if stored is not None and time.monotonic() - stored.issued_monotonic < lag:
            self.state.count_fault("consult_lag")
            stored = None
        if stored is None:
            return self._rejection("ConsultarNfseRpsResposta", [RPS_NOT_FOUND], count=False)
        answer = new_document("ConsultarNfseRpsResposta")
        answer.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _cancelar(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "CancelarNfseEnvio", signed=True)
        if problems:
            return self._rejection("CancelarNfseResposta", problems)
        ident = document.find(any_path("Pedido/InfPedidoCancelamento/IdentificacaoNfse"))
        assert ident is not None  # the XSD requires it
        cnpj = ident.findtext(any_path("CpfCnpj/Cnpj")) or ""
        if not self._cert_matches(certificates, cnpj):
            return self._rejection("CancelarNfseResposta", [CERT_MISMATCH])
        stored = self.state.find_number(int(ident.findtext(nfse_tag("Numero")) or 0))
        if stored is None or stored.cnpj != cnpj:
            return self._rejection("CancelarNfseResposta", [NFSE_NOT_FOUND])
        pedido = document.find(nfse_tag("Pedido"))
        assert pedido is not None
        confirmation = self.state.cancel(stored, partial(cancelamento, pedido))
        if confirmation is None:
            return self._rejection("CancelarNfseResposta", [ALREADY_CANCELLED])
        answer = new_document("CancelarNfseResposta")
        etree.SubElement(answer, nfse_tag("RetCancelamento")).append(confirmation)
        return answer

    def _rejection(
        self,
        root: str,
        messages: list[Message],
        *,
        count: bool = True,
    ) -> etree._Element:
        if count and messages and messages[0][0] != DUPLICATE_RPS[0]:
            self.state.count_rejection()
        answer = new_document(root)
        message_list(answer, messages)
        return answer

    def _error_doc(self, operation: str, messages: list[Message]) -> etree._Element:
        return self._rejection(_ANSWER_ROOTS.get(operation, "GerarNfseResposta"), messages)
