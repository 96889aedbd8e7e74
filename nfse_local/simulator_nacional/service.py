"""The SEFIN Nacional API the simulator answers: POST /nfse, GET /nfse/{chave}, HEAD and GET
/dps/{id}, each behind its checks and the injected faults.

The JSON answers follow the OpenAPI document of the SEFIN ("API NFS-e - Sefin Nacional",
basePath /SefinNacional, copy kept by edusouza/nfse-emissor-go docs/api/sefin-nacional-swagger.json)
and answers captured from produção restrita that public projects quote:
- 201 NFSePostResponseSucesso: tipoAmbiente, versaoAplicativo, dataHoraProcessamento, idDps,
  chaveAcesso, nfseXmlGZipB64, alertas. Captured answers carry `"alertas": null` and, in idDps,
  the NFS-e's Id ("NFS" + chave), not the DPS's; `success_id_dps` chooses ("nfse" by default).
- 400/403/500 NFSePostResponseErro: tipoAmbiente, versaoAplicativo, dataHoraProcessamento,
  idDPS (when read), erros: [{Codigo, Descricao[, Complemento]}] (the document says camelCase;
  the captured answers are PascalCase, which the simulator writes).
- The consults' errors (ResponseErro): tipoAmbiente, versaoAplicativo, dataHoraProcessamento,
  erro: {codigo, descricao} (one object, camelCase, as captured).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from lxml import etree

from nfse_local.simulator.certificates import certificate_names_prestador
from nfse_local.simulator_nacional import messages as msg
from nfse_local.simulator_nacional.documents import (
    BRT,
    VERSAO_APLICATIVO,
    DpsFacts,
    build_nfse,
    chave_acesso,
    dps_facts,
    now_brt,
)
from nfse_local.simulator_nacional.faults import Forced
from nfse_local.simulator_nacional.messages import Message
from nfse_local.simulator_nacional.signatures import SignatureProblem, sign_enveloped, verify_dps
from nfse_local.simulator_nacional.state import NacionalState, StoredNfse
from nfse_local.simulator_nacional.xml import (
    UnreadableData,
    dps_schema_errors,
    nfse_tag,
    pack_data_area,
    parse_untrusted,
    prefixed_elements,
    unpack_data_area,
)

_DPS_ID: Final = re.compile(r"DPS[0-9]{42}")
_CHAVE: Final = re.compile(r"[0-9]{50}")


class Drop(Exception):
    """Close the connection without an answer."""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, messages: list[Message], id_dps: str | None = None) -> None:
        super().__init__(messages[0].codigo)
        self.status = status
        self.messages = messages
        self.id_dps = id_dps


def _processed_at() -> str:
    return datetime.now(BRT).isoformat()


def _error_page(status: int) -> Reply:
    """What the SEFIN's front end answers when the service is down: an HTML page."""
    body = f"<html><body><h1>{status} simulated</h1></body></html>".encode()
    return Reply(status, body, "text/html; charset=utf-8", {"Retry-After": "1"})


class NacionalService:
    """Answers API requests from the simulator's state, with its checks and faults."""

    def __init__(  # noqa: PLR0913 - keyword-only switches
        self,
        state: NacionalState,
        stop: threading.Event,
        *,
        tipo_ambiente: int,
        verify_signatures: bool,
        require_cert_cnpj_match: bool,
        reject_prefixes: bool,
        success_id_dps: Literal["nfse", "dps"],
        signing_key_pem: bytes,
        signing_cert_pem: bytes,
    ) -> None:
        self.state = state
        self._stop = stop
        self.tipo_ambiente = tipo_ambiente
        self.verify_signatures = verify_signatures
        self.require_cert_cnpj_match = require_cert_cnpj_match
        self.reject_prefixes = reject_prefixes
        self.success_id_dps = success_id_dps
        self._key_pem = signing_key_pem
        self._cert_pem = signing_cert_pem

    # -- JSON

    def _json(self, status: int, data: dict[str, Any]) -> Reply:
        return Reply(status, json.dumps(data, ensure_ascii=False).encode())

    def _envelope(self) -> dict[str, Any]:
        return {
            "tipoAmbiente": self.tipo_ambiente,
            "versaoAplicativo": VERSAO_APLICATIVO,
            "dataHoraProcessamento": _processed_at(),
        }

    def _post_error(self, refused: _Refused) -> Reply:
        body = self._envelope()
        if refused.id_dps:
            body["idDPS"] = refused.id_dps
        erros = []
        for message in refused.messages:
            item = {"Codigo": message.codigo, "Descricao": message.descricao}
            if message.complemento:
                item["Complemento"] = message.complemento
            erros.append(item)
        body["erros"] = erros
        return self._json(refused.status, body)

    def _consult_error(self, status: int, message: Message) -> Reply:
        erro = {"codigo": message.codigo, "descricao": message.descricao}
        return self._json(status, {**self._envelope(), "erro": erro})

    # -- faults shared by every API request

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _hang(self) -> None:
        self.state.count_fault("timeout")
        self._wait(self.state.faults.timeout_seconds)
        raise Drop

    def _before_request(self) -> Reply | None:
        """Latency, then a hang or an error page (per-request faults); None to go on."""
        faults = self.state.faults
        delay = self.state.latency()
        if delay > 0:
            self._wait(delay)
        if self.state.roll(faults.timeout_rate):
            self._hang()
        if self.state.roll(faults.error_rate):
            self.state.count_fault(f"http_{faults.error_status}")
            return _error_page(faults.error_status)
        return None

    # -- POST /nfse

    def post_nfse(self, body: bytes) -> Reply:
        """The answer to POST /nfse; raises Drop when the connection is to be cut."""
        self.state.count_request("POST /nfse")
        early = self._before_request()
        if early is not None:
            return early
        try:
            document, facts = self._read_dps(body)
            forced = self._forced(facts)
            if forced is Forced.TEMPORARY:
                self.state.count_fault("temporary")
                return _error_page(503)
            if forced is Forced.TIMEOUT:
                self._hang()
            self._check_dps(document, facts, forced)
        except _Refused as refused:
            if refused.messages[0] is not msg.DUPLICATE_DPS:
                self.state.count_rejection()
            return self._post_error(refused)
        return self._issue(document, facts, forced)

    def _read_dps(self, body: bytes) -> tuple[etree._Element, DpsFacts]:
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, [msg.UNCATALOGUED.with_complemento("JSON inválido")]) from None
        packed = request.get("dpsXmlGZipB64") if isinstance(request, dict) else None
        if not isinstance(packed, str):
            raise _Refused(400, [msg.UNCATALOGUED.with_complemento("dpsXmlGZipB64 ausente")])
        try:
            document = parse_untrusted(unpack_data_area(packed))
        except UnreadableData as exc:
            message = msg.BASE64_FAILURE if exc.reason in ("base64", "gzip") else msg.MALFORMED
            raise _Refused(400, [message.with_complemento(exc.detail)]) from None
        if self.reject_prefixes and prefixed_elements(document):
            detail = ", ".join(prefixed_elements(document)[:5])
            raise _Refused(400, [msg.NAMESPACE_PREFIX.with_complemento(detail)])
        if document.tag != nfse_tag("DPS"):
            raise _Refused(400, [msg.SCHEMA_FAILURE.with_complemento(f"raiz {document.tag}")])
        errors = dps_schema_errors(document)
        if errors:
            raise _Refused(400, [msg.SCHEMA_FAILURE.with_complemento(errors[0])])
        return document, dps_facts(document)

    def _forced(self, facts: DpsFacts) -> Forced | None:
        outcome = self.state.faults.forced.get(facts.n_dps)
        if outcome is not None:
            return outcome
        for candidate in Forced:
            if f"[sim:{candidate.value}]" in facts.x_desc_serv:
                return candidate
        return None

    def _check_dps(self, document: etree._Element, facts: DpsFacts, forced: Forced | None) -> None:
        """The DPS rules, in the order the simulator applies them; raises _Refused."""
        if self.verify_signatures:
            try:
                signer = verify_dps(document)
            except SignatureProblem as exc:
                base = msg.SIGNATURE_MISSING if exc.missing else msg.SIGNATURE_INVALID
                raise _Refused(400, [base.with_complemento(str(exc))], facts.id) from None
            if self.require_cert_cnpj_match and not certificate_names_prestador(
                signer, facts.inscricao
            ):
                raise _Refused(400, [msg.SIGNER_NOT_EMITENTE], facts.id)
        if facts.id != facts.expected_id():
            raise _Refused(400, [msg.ID_MISMATCH.with_complemento(facts.expected_id())], facts.id)
        if facts.tp_amb != str(self.tipo_ambiente):
            raise _Refused(400, [msg.AMBIENTE_MISMATCH], facts.id)
        if forced is Forced.REJECT or self.state.roll(self.state.faults.reject_rate):
            self.state.count_fault("reject")
            raise _Refused(400, [msg.FORCED_REJECT], facts.id)

    def _issue(self, document: etree._Element, facts: DpsFacts, forced: Forced | None) -> Reply:
        def build(n_nfse: int, n_dfse: int) -> StoredNfse:
            issued_at = now_brt()
            chave = chave_acesso(facts.c_loc_emi, facts.inscricao, n_nfse, issued_at)
            nfse = build_nfse(
                document, facts, chave=chave, n_nfse=n_nfse, n_dfse=n_dfse, issued_at=issued_at
            )
            inf = nfse.find(nfse_tag("infNFSe"))
            assert inf is not None
            sign_enveloped(nfse, inf, self._key_pem, self._cert_pem)
            xml = etree.tostring(nfse, encoding="UTF-8", xml_declaration=True)
            return StoredNfse(chave, facts.id, facts.inscricao, n_nfse, xml)

        stored = self.state.issue(facts.id, facts.inscricao, build)
        if stored is None:
            return self._post_error(_Refused(400, [msg.DUPLICATE_DPS], facts.id))
        faults = self.state.faults
        lose = (forced is Forced.LOST and self.state.first_loss(facts.id)) or self.state.roll(
            faults.lost_rate
        )
        if lose:
            self.state.count_fault("lost")
            raise Drop
        if self.state.roll(faults.issued_then_timeout_rate):
            self.state.count_fault("issued_then_timeout")
            self._wait(faults.timeout_seconds)
            raise Drop
        id_dps = f"NFS{stored.chave}" if self.success_id_dps == "nfse" else stored.id_dps
        body = {
            **self._envelope(),
            "idDps": id_dps,
            "chaveAcesso": stored.chave,
            "nfseXmlGZipB64": pack_data_area(stored.xml),
            "alertas": None,
        }
        return self._json(201, body)

    # -- the consults

    def _visible(self, stored: StoredNfse | None) -> StoredNfse | None:
        """`stored`, unless it is younger than the consult lag."""
        lag = self.state.faults.consult_lag_seconds
        if stored is not None and time.monotonic() - stored.issued_monotonic < lag:
            self.state.count_fault("consult_lag")
            return None
        return stored

    def _consult_faults(self, kind: str) -> Reply | None:
        self.state.count_request(kind)
        self.state.count_consult(kind)
        early = self._before_request()
        if early is not None:
            return early
        if self.state.roll(self.state.faults.consult_error_rate):
            self.state.count_fault("consult_error")
            return self._consult_error(500, msg.CONSULT_FAILURE)
        return None

    def head_dps(self, id_dps: str) -> Reply:
        """HEAD /dps/{id}: 200 when an NFS-e was issued for the DPS, 404 when not; no body."""
        early = self._consult_faults("HEAD /dps")
        if early is not None:
            return Reply(early.status, b"", early.content_type)
        if _DPS_ID.fullmatch(id_dps) is None:
            return Reply(400)
        return Reply(200 if self._visible(self.state.by_dps(id_dps)) else 404)

    def get_dps(self, id_dps: str) -> Reply:
        """GET /dps/{id}: DpsGetResponse with the chave, or the error answer."""
        early = self._consult_faults("GET /dps")
        if early is not None:
            return early
        if _DPS_ID.fullmatch(id_dps) is None:
            return self._consult_error(400, msg.DPS_ID_INVALID)
        stored = self._visible(self.state.by_dps(id_dps))
        if stored is None:
            return self._consult_error(404, msg.DPS_NOT_FOUND)
        return self._json(200, {**self._envelope(), "idDps": id_dps, "chaveAcesso": stored.chave})

    def get_nfse(self, chave: str) -> Reply:
        """GET /nfse/{chave}: NFSeGetResponseSucesso with the NFS-e, or the error answer."""
        early = self._consult_faults("GET /nfse")
        if early is not None:
            return early
        if _CHAVE.fullmatch(chave) is None:
            return self._consult_error(400, msg.CHAVE_INVALID)
        stored = self._visible(self.state.by_chave(chave))
        if stored is None:
            return self._consult_error(404, msg.CHAVE_NOT_FOUND)
        body = {
            **self._envelope(),
            "chaveAcesso": stored.chave,
            "nfseXmlGZipB64": pack_data_area(stored.xml),
        }
        return self._json(200, body)
