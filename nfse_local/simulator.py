"""A municipality NFS-e web service on loopback: ABRASF 2.04 SOAP, strict checks, scripted faults.

It speaks what nfse_core.providers.abrasf sends (GerarNfse, RecepcionarLoteRpsSincrono,
ConsultarNfsePorRps, CancelarNfse), validates every document against the ABRASF XSD and its
XMLDSig signature, keeps the NFS-e it issued in memory keyed by (prestador, numero, serie, tipo)
and refuses a second GerarNfse for the same RPS with E10, as a real provider does.

Faults, set at start (FaultConfig), from Python (`sim.set_faults(...)`, `sim.force(...)`) or
over HTTP (`POST /_admin/faults` JSON): latency, HTTP 500/503, SOAP Fault, timeout (no answer
for longer than the client waits), and "accepted but the answer is lost" (the NFS-e is issued,
the connection is closed without an answer). Outcomes can be forced per RPS number or by a
marker in Discriminacao: [sim:reject], [sim:temporary], [sim:lost] (first time only),
[sim:timeout], [sim:fault]. `GET /_admin/stats` counts requests, issuances per RPS, refused
duplicates and injected faults, so tests can assert "exactly one issuance".

    with ProviderSimulator() as sim:
        client = AbrasfSoapClient(sim.url)

    python -m nfse_local.simulator --port 8089
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import secrets
import signal
import ssl
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from lxml import etree

from nfse_core.domain.rules import uf_of_ibge
from nfse_core.xml.safe import UnsafeXml, parse_untrusted
from nfse_core.xml.schema import NFSE_NS, schema_errors
from nfse_core.xml.signing import SignatureInvalid, signing_certificates, verify_signature

log = logging.getLogger(__name__)

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS: Final = "http://nfse.abrasf.org.br"
MAX_REQUEST_BYTES: Final = 2_000_000
_BRT = timezone(timedelta(hours=-3))

# E10 is the ABRASF manual's "RPS já informado". The E9xx codes are this simulator's own.
DUPLICATE_RPS = ("E10", "RPS já informado.", "Consulte a NFS-e gerada para este RPS.")
SCHEMA_INVALID = ("E900", "Arquivo em desacordo com o XML Schema.", None)
SIGNATURE_INVALID = ("E901", "Assinatura digital ausente ou inválida.", None)
CERT_MISMATCH = ("E902", "Certificado não pertence ao prestador.", None)
FORCED_REJECT = ("E903", "Rejeição simulada.", "Remova o marcador [sim:reject].")
RPS_NOT_FOUND = ("E904", "RPS não encontrado.", None)
NFSE_NOT_FOUND = ("E905", "NFS-e não encontrada.", None)
ALREADY_CANCELLED = ("E906", "NFS-e já cancelada.", None)
UNKNOWN_OPERATION = ("E907", "Operação não suportada pelo simulador.", None)


class Forced(StrEnum):
    REJECT = "reject"
    TEMPORARY = "temporary"
    LOST = "lost"
    TIMEOUT = "timeout"
    SOAP_FAULT = "fault"


@dataclass(frozen=True)
class FaultConfig:
    """Injected misbehaviour; rates are probabilities per SOAP request (0..1)."""

    latency: float | tuple[float, float] = 0.0  # seconds, fixed or a uniform range
    error_rate: float = 0.0  # HTTP error_status without an envelope
    error_status: int = 503
    soap_fault_rate: float = 0.0  # HTTP 500 with a SOAP Fault
    timeout_rate: float = 0.0  # no answer for timeout_seconds, nothing processed
    timeout_seconds: float = 30.0
    lost_rate: float = 0.0  # GerarNfse issues, then the connection closes unanswered
    forced: dict[int, Forced] = field(default_factory=dict)  # RPS numero -> outcome
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "soap_fault_rate", "timeout_rate", "lost_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_status not in (500, 502, 503, 504):
            raise ValueError("error_status must be 500, 502, 503 or 504")
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency,) * 2
        if low < 0 or high < low:
            raise ValueError("latency must be >= 0 (and min <= max)")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = list(self.latency) if isinstance(self.latency, tuple) else self.latency
        data["forced"] = {str(k): v.value for k, v in self.forced.items()}
        return data

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with `changes` (JSON-like values, as the admin endpoint receives them)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = dict(changes)
        if isinstance(values.get("latency"), list):
            low, high = values["latency"]
            values["latency"] = (float(low), float(high))
        if "forced" in values:
            values["forced"] = {int(k): Forced(v) for k, v in dict(values["forced"]).items()}
        return replace(self, **values)


@dataclass
class StoredNfse:
    numero: int
    codigo_verificacao: str
    issued_at: datetime
    comp_nfse: etree._Element
    cnpj: str
    inscricao_municipal: str | None
    codigo_municipio: str
    cancelled_at: datetime | None = None


RpsKeyTuple = tuple[str, int, str, int]  # cnpj, numero, serie, tipo


class _Drop(Exception):
    """Close the connection without an answer (lost answer, timeout)."""


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "text/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _n(local: str) -> str:
    return f"{{{NFSE_NS}}}{local}"


def _any(path: str) -> str:
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def _leaf(parent: etree._Element, local: str, text: str) -> etree._Element:
    node = etree.SubElement(parent, _n(local))
    node.text = text
    return node


def _message_list(parent: etree._Element, messages: list[tuple[str, str, str | None]]) -> None:
    lista = etree.SubElement(parent, _n("ListaMensagemRetorno"))
    for codigo, mensagem, correcao in messages:
        item = etree.SubElement(lista, _n("MensagemRetorno"))
        _leaf(item, "Codigo", codigo)
        _leaf(item, "Mensagem", mensagem)
        if correcao:
            _leaf(item, "Correcao", correcao)


def _new_doc(local: str) -> etree._Element:
    nsmap: Any = {None: NFSE_NS}
    return etree.Element(_n(local), nsmap=nsmap)


class SimulatorState:
    """Issued NFS-e, counters and fault settings; every access under one lock."""

    def __init__(self, faults: FaultConfig) -> None:
        self._lock = threading.RLock()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not security
        self._store: dict[RpsKeyTuple, StoredNfse] = {}
        self._by_number: dict[int, RpsKeyTuple] = {}
        self._next_number = 1
        self._lost_once: set[RpsKeyTuple] = set()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total_requests = 0
        self.requests_by_operation: Counter[str] = Counter()
        self.issued = 0
        self.duplicates_refused = 0
        self.rejected = 0
        self.cancelled = 0
        self.consults = 0
        self.faults_injected: Counter[str] = Counter()
        self.issuances_per_rps: Counter[str] = Counter()
        # Mutual TLS: the subject CN of the client certificate of each SOAP request.
        self.tls_client_subjects: Counter[str] = Counter()

    @property
    def faults(self) -> FaultConfig:
        with self._lock:
            return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        with self._lock:
            if faults.seed is not None and faults.seed != self._faults.seed:
                self._rng = random.Random(faults.seed)  # noqa: S311
            self._faults = faults

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def latency(self) -> float:
        with self._lock:
            value = self._faults.latency
            if isinstance(value, tuple):
                return self._rng.uniform(*value)
            return value

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    def count_request(self, operation: str) -> None:
        with self._lock:
            self.total_requests += 1
            self.requests_by_operation[operation] += 1

    def first_loss(self, key: RpsKeyTuple) -> bool:
        with self._lock:
            if key in self._lost_once:
                return False
            self._lost_once.add(key)
            return True

    def issue(self, key: RpsKeyTuple, build: Any) -> tuple[StoredNfse, bool]:  # (nfse, created now)
        with self._lock:
            existing = self._store.get(key)
            if existing is not None:
                self.duplicates_refused += 1
                return existing, False
            numero = self._next_number
            self._next_number += 1
            stored: StoredNfse = build(numero)
            self._store[key] = stored
            self._by_number[numero] = key
            self.issued += 1
            self.issuances_per_rps["/".join(str(part) for part in key)] += 1
            return stored, True

    def find(self, key: RpsKeyTuple) -> StoredNfse | None:
        with self._lock:
            return self._store.get(key)

    def find_number(self, numero: int) -> StoredNfse | None:
        with self._lock:
            key = self._by_number.get(numero)
            return None if key is None else self._store[key]

    def record_tls_client(self, subject_cn: str) -> None:
        with self._lock:
            self.tls_client_subjects[subject_cn] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "requests_by_operation": dict(self.requests_by_operation),
                "issued": self.issued,
                "duplicates_refused": self.duplicates_refused,
                "rejected": self.rejected,
                "cancelled": self.cancelled,
                "consults": self.consults,
                "faults_injected": dict(self.faults_injected),
                "issuances_per_rps": dict(self.issuances_per_rps),
                "tls_client_subjects": dict(self.tls_client_subjects),
                "stored": len(self._store),
            }

    def reset(self) -> None:
        with self._lock:
            self._store.clear()
            self._by_number.clear()
            self._lost_once.clear()
            self._next_number = 1
            self._reset_counters()


def _subject_cn(peer: Any) -> str:
    """The CN of a verified peer certificate (ssl's getpeercert() form); empty if none."""
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    simulator: ProviderSimulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "nfse-simulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator: " + format, *args)

    # -- plumbing

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False, default=str).encode()
        self._send(_Reply(status, body, "application/json"))

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return None
        if int(length) > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
            return None
        return self.rfile.read(int(length))

    # -- routes

    def do_GET(self) -> None:
        sim = self.server.simulator
        if self.path == "/_admin/stats":
            self._json(HTTPStatus.OK, sim.stats())
        elif self.path == "/_admin/faults":
            self._json(HTTPStatus.OK, sim.faults.as_dict())
        elif self.path in ("/", "/_admin/health"):
            self._json(HTTPStatus.OK, {"status": "ok", "url": sim.url})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        sim = self.server.simulator
        if self.path.startswith("/_admin/"):
            self._admin(sim, body)
            return
        if isinstance(self.connection, ssl.SSLSocket):
            sim.state.record_tls_client(_subject_cn(self.connection.getpeercert()))
        try:
            reply = sim.handle_soap(body)
        except _Drop:
            self.close_connection = True
            return
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.close_connection = True

    def _admin(self, sim: ProviderSimulator, body: bytes) -> None:
        if self.path == "/_admin/reset":
            sim.reset()
            self._json(HTTPStatus.OK, {"status": "reset"})
            return
        if self.path != "/_admin/faults":
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            sim.set_faults(**changes)
        except (ValueError, TypeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._json(HTTPStatus.OK, sim.faults.as_dict())


class ProviderSimulator:
    """The simulator server; a context manager that serves on a free loopback port by default."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultConfig | None = None,
        verify_signatures: bool = True,
        require_cert_cnpj_match: bool = True,
        path: str = "/nfse",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve HTTPS with this server-side context; with `verify_mode` CERT_REQUIRED
        it is a provider that authenticates each connection with the client's certificate."""
        self.host = host
        self.port = port
        self.path = path
        self.tls = tls
        self.verify_signatures = verify_signatures
        self.require_cert_cnpj_match = require_cert_cnpj_match
        self.state = SimulatorState(faults or FaultConfig())
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> ProviderSimulator:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self.host, self.port), _Handler)
        if self.tls is not None:
            # The handshake runs in accept(); a client without an accepted certificate is
            # refused there and never reaches a handler.
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.simulator = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        log.info("provider simulator listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in a timeout fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The SOAP endpoint (what PROVIDER_ENDPOINT_OVERRIDE points at)."""
        return self.base_url + self.path

    # -- control from Python

    @property
    def faults(self) -> FaultConfig:
        return self.state.faults

    def set_faults(self, **changes: Any) -> FaultConfig:
        faults = self.state.faults.updated(changes)
        self.state.set_faults(faults)
        return faults

    def force(self, numero: int, outcome: Forced | str | None) -> None:
        """Script the outcome of every request for RPS `numero` (None clears it)."""
        forced = dict(self.state.faults.forced)
        if outcome is None:
            forced.pop(numero, None)
        else:
            forced[numero] = Forced(outcome)
        self.state.set_faults(replace(self.state.faults, forced=forced))

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        """Forget every NFS-e and counter; the fault settings stay."""
        self.state.reset()

    def issued(self, cnpj: str, numero: int, serie: str = "1", tipo: int = 1) -> StoredNfse | None:
        return self.state.find((cnpj, numero, serie, tipo))

    # -- SOAP

    def handle_soap(self, body: bytes) -> _Reply:
        try:
            envelope = parse_untrusted(body, max_bytes=MAX_REQUEST_BYTES)
        except UnsafeXml as exc:
            return self._fault(SOAP11_NS, f"Client: unreadable request ({exc.reason.value})", 400)
        soap_ns = etree.QName(envelope).namespace or SOAP11_NS
        request = envelope.find(f"{{{soap_ns}}}Body/*")
        if etree.QName(envelope).localname != "Envelope" or request is None:
            return self._fault(soap_ns, "Client: not a SOAP envelope", 400)
        operation = etree.QName(request).localname.removesuffix("Request")
        self.state.count_request(operation)

        dados = request.find("nfseDadosMsg")
        if dados is None:
            dados = request.find(f"{{{WSDL_NS}}}nfseDadosMsg")
        if dados is None:
            return self._fault(soap_ns, "Client: nfseDadosMsg missing", 400)
        try:
            if len(dados):
                document = dados[0]
            else:
                text = (dados.text or "").strip().encode("utf-8")
                document = parse_untrusted(text, max_bytes=MAX_REQUEST_BYTES)
        except UnsafeXml:
            return self._answer(soap_ns, operation, self._error_doc(operation, [SCHEMA_INVALID]))

        # Per-request faults first (the provider is down or slow before it looks at the RPS).
        forced = self._forced_outcome(document)
        try:
            self._random_faults(soap_ns)
        except _ReplyNow as now:
            return now.reply
        if forced is Forced.TEMPORARY:
            self.state.count_fault("temporary")
            return _Reply(
                503, b"Service Unavailable (simulated)", "text/plain", {"Retry-After": "1"}
            )
        if forced is Forced.SOAP_FAULT:
            self.state.count_fault("soap_fault")
            return self._fault(soap_ns, "Server: simulated fault")
        if forced is Forced.TIMEOUT:
            self._hang()

        handler = {
            "GerarNfse": self._gerar_nfse,
            "RecepcionarLoteRpsSincrono": self._lote_sincrono,
            "ConsultarNfsePorRps": self._consultar_por_rps,
            "CancelarNfse": self._cancelar,
        }.get(operation)
        if handler is None:
            return self._answer(soap_ns, operation, self._error_doc(operation, [UNKNOWN_OPERATION]))
        return self._answer(soap_ns, operation, handler(document, forced))

    def _random_faults(self, soap_ns: str) -> None:
        faults = self.state.faults
        delay = self.state.latency()
        if delay > 0:
            self._stop.wait(delay)
        if self.state.roll(faults.timeout_rate):
            self._hang()
        if self.state.roll(faults.error_rate):
            self.state.count_fault(f"http_{faults.error_status}")
            raise _ReplyNow(_Reply(faults.error_status, b"simulated error", "text/plain"))
        if self.state.roll(faults.soap_fault_rate):
            self.state.count_fault("soap_fault")
            raise _ReplyNow(self._fault(soap_ns, "Server: simulated fault"))

    def _hang(self) -> None:
        self.state.count_fault("timeout")
        self._stop.wait(self.state.faults.timeout_seconds)
        raise _Drop

    def _forced_outcome(self, document: etree._Element) -> Forced | None:
        numero = document.find(f".//{_any('IdentificacaoRps/Numero')}")
        if numero is not None and numero.text and numero.text.strip().isdigit():
            outcome = self.state.faults.forced.get(int(numero.text.strip()))
            if outcome is not None:
                return outcome
        discriminacao = document.find(f".//{_any('Discriminacao')}")
        text = discriminacao.text if discriminacao is not None and discriminacao.text else ""
        for outcome in Forced:
            if f"[sim:{outcome.value}]" in text:
                return outcome
        return None

    # -- checks shared by the signed operations

    def _check(
        self, document: etree._Element, expected_root: str, signed: bool
    ) -> list[tuple[str, str, str | None]]:
        if document.tag != _n(expected_root):
            return [(SCHEMA_INVALID[0], f"Esperado {expected_root}.", None)]
        errors = schema_errors(document)
        if errors:
            return [(SCHEMA_INVALID[0], SCHEMA_INVALID[1], errors[0][:200])]
        if signed and self.verify_signatures:
            try:
                verify_signature(document)
            except SignatureInvalid as exc:
                return [(SIGNATURE_INVALID[0], SIGNATURE_INVALID[1], str(exc)[:200])]
        return []

    def _cert_matches(self, document: etree._Element, cnpj: str) -> bool:
        if not (self.verify_signatures and self.require_cert_cnpj_match):
            return True
        for cert in signing_certificates(document):
            names = [attr.value for attr in cert.subject]
            if not any(isinstance(v, str) and v.endswith(f":{cnpj}") for v in names):
                return False
        return True

    # -- operations

    def _gerar_nfse(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems = self._check(document, "GerarNfseEnvio", signed=True)
        if problems:
            return self._rejection("GerarNfseResposta", problems)
        rps = document.find(_n("Rps"))
        assert rps is not None  # the XSD requires it
        key, cnpj = self._rps_key(rps)
        if not self._cert_matches(document, cnpj):
            return self._rejection("GerarNfseResposta", [CERT_MISMATCH])
        if forced is Forced.REJECT:
            return self._rejection("GerarNfseResposta", [FORCED_REJECT])
        stored, created = self.state.issue(key, lambda numero: self._build_nfse(numero, rps))
        if not created:
            return self._rejection("GerarNfseResposta", [DUPLICATE_RPS])
        lose = (forced is Forced.LOST and self.state.first_loss(key)) or self.state.roll(
            self.state.faults.lost_rate
        )
        if lose:
            self.state.count_fault("lost")
            raise _Drop
        answer = _new_doc("GerarNfseResposta")
        lista = etree.SubElement(answer, _n("ListaNfse"))
        lista.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _lote_sincrono(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems = self._check(document, "EnviarLoteRpsSincronoEnvio", signed=True)
        if problems:
            return self._rejection("EnviarLoteRpsSincronoResposta", problems)
        if forced is Forced.REJECT:
            return self._rejection("EnviarLoteRpsSincronoResposta", [FORCED_REJECT])
        rps_list = document.findall(_any("LoteRps/ListaRps/Rps"))
        keys = [self._rps_key(rps) for rps in rps_list]
        if any(not self._cert_matches(document, cnpj) for _, cnpj in keys):
            return self._rejection("EnviarLoteRpsSincronoResposta", [CERT_MISMATCH])
        answer = _new_doc("EnviarLoteRpsSincronoResposta")
        numero_lote = document.find(_any("LoteRps/NumeroLote"))
        _leaf(answer, "NumeroLote", numero_lote.text or "0" if numero_lote is not None else "0")
        _leaf(answer, "DataRecebimento", datetime.now(_BRT).replace(microsecond=0).isoformat())
        _leaf(answer, "Protocolo", secrets.token_hex(8))
        duplicates = [key for key, _ in keys if self.state.find(key) is not None]
        if duplicates:
            lista = etree.SubElement(answer, _n("ListaMensagemRetornoLote"))
            for _cnpj, numero, serie, tipo in duplicates:
                item = etree.SubElement(lista, _n("MensagemRetorno"))
                ident = etree.SubElement(item, _n("IdentificacaoRps"))
                _leaf(ident, "Numero", str(numero))
                _leaf(ident, "Serie", serie)
                _leaf(ident, "Tipo", str(tipo))
                _leaf(item, "Codigo", DUPLICATE_RPS[0])
                _leaf(item, "Mensagem", DUPLICATE_RPS[1])
            with self.state._lock:
                self.state.duplicates_refused += len(duplicates)
            return answer
        lista_nfse = etree.SubElement(answer, _n("ListaNfse"))
        for rps, (key, _) in zip(rps_list, keys, strict=True):
            stored, _created = self.state.issue(
                key, lambda numero, rps=rps: self._build_nfse(numero, rps)
            )
            lista_nfse.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _consultar_por_rps(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        with self.state._lock:
            self.state.consults += 1
        problems = self._check(document, "ConsultarNfseRpsEnvio", signed=False)
        if problems:
            return self._rejection("ConsultarNfseRpsResposta", problems, count=False)
        ident = document.find(_n("IdentificacaoRps"))
        cnpj = document.findtext(_any("Prestador/CpfCnpj/Cnpj")) or document.findtext(
            _any("Prestador/CpfCnpj/Cpf")
        )
        assert ident is not None and cnpj is not None
        key = (
            cnpj.strip(),
            int(ident.findtext(_n("Numero")) or 0),
            (ident.findtext(_n("Serie")) or "").strip(),
            int(ident.findtext(_n("Tipo")) or 0),
        )
        stored = self.state.find(key)
        if stored is None:
            return self._rejection("ConsultarNfseRpsResposta", [RPS_NOT_FOUND], count=False)
        answer = _new_doc("ConsultarNfseRpsResposta")
        answer.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _cancelar(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems = self._check(document, "CancelarNfseEnvio", signed=True)
        if problems:
            return self._rejection("CancelarNfseResposta", problems)
        ident = document.find(_any("Pedido/InfPedidoCancelamento/IdentificacaoNfse"))
        assert ident is not None
        cnpj = ident.findtext(_any("CpfCnpj/Cnpj")) or ""
        if not self._cert_matches(document, cnpj):
            return self._rejection("CancelarNfseResposta", [CERT_MISMATCH])
        stored = self.state.find_number(int(ident.findtext(_n("Numero")) or 0))
        if stored is None or stored.cnpj != cnpj:
            return self._rejection("CancelarNfseResposta", [NFSE_NOT_FOUND])
        pedido = document.find(_n("Pedido"))
        assert pedido is not None
        with self.state._lock:
            if stored.cancelled_at is not None:
                return self._rejection("CancelarNfseResposta", [ALREADY_CANCELLED])
            stored.cancelled_at = datetime.now(_BRT).replace(microsecond=0)
            cancelamento = self._cancelamento(pedido, stored.cancelled_at)
            stored.comp_nfse.append(copy.deepcopy(cancelamento))
            self.state.cancelled += 1
        answer = _new_doc("CancelarNfseResposta")
        etree.SubElement(answer, _n("RetCancelamento")).append(cancelamento)
        return answer

    # -- documents

    def _rps_key(self, rps: etree._Element) -> tuple[RpsKeyTuple, str]:
        inf = rps.find(_n("InfDeclaracaoPrestacaoServico"))
        assert inf is not None
        cnpj = (inf.findtext(_any("Prestador/CpfCnpj/Cnpj")) or "").strip()
        ident = inf.find(_any("Rps/IdentificacaoRps"))
        if ident is None:  # optional in the XSD; the simulator keys on the Id then
            return (cnpj, 0, inf.get("Id", ""), 0), cnpj
        key = (
            cnpj,
            int(ident.findtext(_n("Numero")) or 0),
            (ident.findtext(_n("Serie")) or "").strip(),
            int(ident.findtext(_n("Tipo")) or 0),
        )
        return key, cnpj

    def _build_nfse(self, numero: int, rps: etree._Element) -> StoredNfse:
        inf_rps = rps.find(_n("InfDeclaracaoPrestacaoServico"))
        assert inf_rps is not None
        cnpj = (inf_rps.findtext(_any("Prestador/CpfCnpj/Cnpj")) or "").strip()
        im = inf_rps.findtext(_any("Prestador/InscricaoMunicipal"))
        municipio = (inf_rps.findtext(_any("Servico/CodigoMunicipio")) or "3550308").strip()
        uf = uf_of_ibge(municipio) or "SP"
        issued_at = datetime.now(_BRT).replace(microsecond=0)
        codigo = secrets.token_hex(4).upper()[:8]

        comp = _new_doc("CompNfse")
        nfse = etree.SubElement(comp, _n("Nfse"), versao="2.04")
        inf = etree.SubElement(nfse, _n("InfNfse"), Id=f"nfse{numero}")
        _leaf(inf, "Numero", str(numero))
        _leaf(inf, "CodigoVerificacao", codigo)
        _leaf(inf, "DataEmissao", issued_at.isoformat())
        valores = etree.SubElement(inf, _n("ValoresNfse"))
        base = _decimal(inf_rps.findtext(_any("Servico/Valores/ValorServicos")))
        aliquota_text = inf_rps.findtext(_any("Servico/Valores/Aliquota"))
        _leaf(valores, "BaseCalculo", f"{base:.2f}")
        if aliquota_text:
            aliquota = _decimal(aliquota_text)
            _leaf(valores, "Aliquota", f"{aliquota:.2f}")
            _leaf(valores, "ValorIss", f"{(base * aliquota / 100).quantize(Decimal('0.01')):.2f}")
        _leaf(valores, "ValorLiquidoNfse", f"{base:.2f}")
        prestador = etree.SubElement(inf, _n("PrestadorServico"))
        _leaf(prestador, "RazaoSocial", f"EMPRESA {cnpj}")
        endereco = etree.SubElement(prestador, _n("Endereco"))
        _leaf(endereco, "Endereco", "Rua Simulada")
        _leaf(endereco, "Numero", "1")
        _leaf(endereco, "Bairro", "Centro")
        _leaf(endereco, "CodigoMunicipio", municipio)
        _leaf(endereco, "Uf", uf)
        _leaf(endereco, "Cep", "01001000")
        orgao = etree.SubElement(inf, _n("OrgaoGerador"))
        _leaf(orgao, "CodigoMunicipio", municipio)
        _leaf(orgao, "Uf", uf)
        declaracao = etree.SubElement(inf, _n("DeclaracaoPrestacaoServico"))
        for child in rps:
            declaracao.append(copy.deepcopy(child))
        return StoredNfse(
            numero=numero,
            codigo_verificacao=codigo,
            issued_at=issued_at,
            comp_nfse=comp,
            cnpj=cnpj,
            inscricao_municipal=im.strip() if im else None,
            codigo_municipio=municipio,
        )

    @staticmethod
    def _cancelamento(pedido: etree._Element, when: datetime) -> etree._Element:
        node = _new_doc("NfseCancelamento")
        node.set("versao", "2.04")
        confirmacao = etree.SubElement(node, _n("Confirmacao"))
        confirmacao.append(copy.deepcopy(pedido))
        _leaf(confirmacao, "DataHora", when.isoformat())
        return node

    def _rejection(
        self,
        root: str,
        messages: list[tuple[str, str, str | None]],
        *,
        count: bool = True,
    ) -> etree._Element:
        if count:
            with self.state._lock:
                if messages and messages[0][0] != DUPLICATE_RPS[0]:
                    self.state.rejected += 1
        answer = _new_doc(root)
        _message_list(answer, messages)
        return answer

    def _error_doc(
        self, operation: str, messages: list[tuple[str, str, str | None]]
    ) -> etree._Element:
        root = {
            "GerarNfse": "GerarNfseResposta",
            "RecepcionarLoteRpsSincrono": "EnviarLoteRpsSincronoResposta",
            "ConsultarNfsePorRps": "ConsultarNfseRpsResposta",
            "CancelarNfse": "CancelarNfseResposta",
        }.get(operation, "GerarNfseResposta")
        return self._rejection(root, messages)

    def _answer(self, soap_ns: str, operation: str, document: etree._Element) -> _Reply:
        envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
        body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
        response = etree.SubElement(
            body, f"{{{WSDL_NS}}}{operation}Response", nsmap={"ns2": WSDL_NS}
        )
        output = etree.SubElement(response, "outputXML")
        output.text = etree.tostring(document, encoding="unicode")
        content_type = (
            "application/soap+xml; charset=utf-8"
            if soap_ns == SOAP12_NS
            else "text/xml; charset=utf-8"
        )
        return _Reply(
            200, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
        )

    @staticmethod
    def _fault(soap_ns: str, message: str, status: int = 500) -> _Reply:
        envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
        body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
        fault = etree.SubElement(body, f"{{{soap_ns}}}Fault")
        if soap_ns == SOAP12_NS:
            code = etree.SubElement(fault, f"{{{soap_ns}}}Code")
            etree.SubElement(code, f"{{{soap_ns}}}Value").text = (
                "soap:Sender" if status < 500 else "soap:Receiver"
            )
            reason = etree.SubElement(fault, f"{{{soap_ns}}}Reason")
            text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
            text.set("{http://www.w3.org/XML/1998/namespace}lang", "pt-BR")
            text.text = message
            content_type = "application/soap+xml; charset=utf-8"
        else:
            etree.SubElement(fault, "faultcode").text = (
                "soap:Client" if status < 500 else "soap:Server"
            )
            etree.SubElement(fault, "faultstring").text = message
            content_type = "text/xml; charset=utf-8"
        return _Reply(
            status, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
        )


class _ReplyNow(Exception):
    def __init__(self, reply: _Reply) -> None:
        super().__init__("reply now")
        self.reply = reply


def _decimal(value: str | None) -> Decimal:
    try:
        return Decimal((value or "0").strip())
    except InvalidOperation:
        return Decimal(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ABRASF 2.04 provider simulator (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=503)
    parser.add_argument("--soap-fault-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument("--lost-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-verify-signatures", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = FaultConfig(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        soap_fault_rate=args.soap_fault_rate,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        lost_rate=args.lost_rate,
        seed=args.seed,
    )
    simulator = ProviderSimulator(
        args.host, args.port, faults=faults, verify_signatures=not args.no_verify_signatures
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    simulator.start()
    print(f"provider simulator: {simulator.url} (admin: {simulator.base_url}/_admin/stats)")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
