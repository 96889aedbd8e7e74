"""The simulator's HTTP server: the API under /SefinNacional and the /_admin endpoints."""

from __future__ import annotations

import json
import logging
import ssl
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from nfse_local.simulator_nacional.service import Drop, Reply

if TYPE_CHECKING:
    from nfse_local.simulator_nacional.server import NacionalSimulator

log = logging.getLogger(__name__)

BASE_PATH: Final = "/SefinNacional"  # case-sensitive, as the SEFIN's
MAX_REQUEST_BYTES: Final = 2_000_000


def _subject_cn(peer: Any) -> str:
    """The CN of a verified peer certificate (ssl's getpeercert() form); empty if none."""
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""


class NacionalHttpServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator; `admin_only` serves /_admin alone."""

    daemon_threads = True
    block_on_close = False
    simulator: NacionalSimulator
    admin_only: bool = False


class NacionalRequestHandler(BaseHTTPRequestHandler):
    """One connection to the simulator."""

    server: NacionalHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "nfse-sefin-simulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sefin simulator: " + format, *args)

    def _send(self, reply: Reply, *, head: bool = False) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.close_connection = True

    def _json(self, status: int, data: Any) -> None:
        self._send(Reply(status, json.dumps(data, ensure_ascii=False, default=str).encode()))

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

    def _api_path(self) -> str | None:
        """The path below /SefinNacional (query dropped), or None for another path."""
        if self.server.admin_only:
            return None
        path = self.path.split("?", 1)[0]
        if not path.startswith(BASE_PATH + "/"):
            return None
        if isinstance(self.connection, ssl.SSLSocket):
            self.server.simulator.state.record_tls_client(
                _subject_cn(self.connection.getpeercert())
            )
        return path[len(BASE_PATH) :]

    def _convenio_path(self) -> str | None:
        """The municipality of GET /parametrizacao/{codigoMunicipio}/convenio (the ADN
        parametrização API, served here beside the SEFIN's), or None."""
        if self.server.admin_only:
            return None
        parts = self.path.split("?", 1)[0].split("/")
        if len(parts) == 4 and parts[1] == "parametrizacao" and parts[3] == "convenio":
            return parts[2]
        return None

    def _answer(self, produce: Any, *, head: bool = False) -> None:
        try:
            reply = produce()
        except Drop:
            self.close_connection = True
            return
        self._send(reply, head=head)

    def _not_found(self) -> None:
        self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    # -- routes

    def do_HEAD(self) -> None:
        service = self.server.simulator.service
        path = self._api_path()
        if path is not None and path.startswith("/dps/") and path.count("/") == 2:
            self._answer(lambda: service.head_dps(path[len("/dps/") :]), head=True)
        else:
            self._send(Reply(404), head=True)

    def do_GET(self) -> None:
        sim = self.server.simulator
        if self.path == "/_admin/stats":
            self._json(HTTPStatus.OK, sim.stats())
            return
        if self.path == "/_admin/faults":
            self._json(HTTPStatus.OK, sim.faults.as_dict())
            return
        if self.path == "/_admin/health":
            self._json(HTTPStatus.OK, {"status": "ok", "url": sim.base_url})
            return
        convenio = self._convenio_path()
        if convenio is not None:
            status, body = sim.convenio_answer(convenio)
            self._json(status, body)
            return
        path = self._api_path()
        if path is not None and path.count("/") == 2:
            if path.startswith("/dps/"):
                self._answer(lambda: sim.service.get_dps(path[len("/dps/") :]))
                return
            if path.startswith("/nfse/"):
                self._answer(lambda: sim.service.get_nfse(path[len("/nfse/") :]))
                return
        self._not_found()

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        sim = self.server.simulator
        if self.path.startswith("/_admin/"):
            self._admin(sim, body)
            return
        if self._api_path() == "/nfse":
            self._answer(lambda: sim.service.post_nfse(body))
            return
        self._not_found()

    def _admin(self, sim: NacionalSimulator, body: bytes) -> None:
        if self.path == "/_admin/reset":
            sim.reset()
            self._json(HTTPStatus.OK, {"status": "reset"})
            return
        if self.path != "/_admin/faults":
            self._not_found()
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
