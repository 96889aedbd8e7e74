"""The simulator's HTTP server: SOAP posts, the /_admin endpoints, and slow (dripped) answers."""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from nfse_local.simulator.parsing import MAX_REQUEST_BYTES
from nfse_local.simulator.soap import Drop, Reply

if TYPE_CHECKING:
    from nfse_local.simulator.server import ProviderSimulator

log = logging.getLogger(__name__)


def _subject_cn(peer: Any) -> str:
    """The CN of a verified peer certificate (ssl's getpeercert() form); empty if none."""
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""


class SimulatorHttpServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator."""

    daemon_threads = True
    block_on_close = False
    simulator: ProviderSimulator


# How often a dripping handler looks at the client and at the stop flag while it waits.
_DRIP_POLL_SECONDS: Final = 0.05


class SimulatorRequestHandler(BaseHTTPRequestHandler):
    """One connection to the simulator."""

    server: SimulatorHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "nfse-simulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator: " + format, *args)

    # -- plumbing

    def _send(self, reply: Reply) -> None:
        if reply.drip is not None:
            self._drip(reply, *reply.drip)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False, default=str).encode()
        self._send(Reply(status, body, "application/json"))

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

    # -- a slow answer

    def _raw_answer(self, reply: Reply) -> bytes:
        """The whole HTTP answer as bytes: what send_response & co. would write."""
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        headers = {
            "Server": self.version_string(),
            "Date": self.date_time_string(),
            "Content-Type": reply.content_type,
            "Content-Length": str(len(reply.body)),
            **reply.headers,
        }
        head = f"{self.protocol_version} {reply.status} {phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        return head.encode("latin-1") + reply.body

    def _drip(self, reply: Reply, interval: float, step: int) -> None:
        """Write the answer `step` bytes at a time, `interval` seconds apart."""
        sim = self.server.simulator
        data = self._raw_answer(reply)
        self.log_request(reply.status)
        sim.state.drip_started()
        try:
            for offset in range(0, len(data), step):
                if offset and not self._pause(interval):
                    self.close_connection = True
                    return
                self.wfile.write(data[offset : offset + step])
        except OSError:  # the client went away between two checks
            self.close_connection = True
        finally:
            sim.state.drip_ended()

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the simulator stops or the client hangs up."""
        sim = self.server.simulator
        deadline = time.monotonic() + seconds
        while True:
            if sim.stopping:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            wait = min(remaining, _DRIP_POLL_SECONDS)
            try:
                readable, _, _ = select.select([self.connection], [], [], wait)
            except (OSError, ValueError):  # the socket is closed already
                return False
            if readable:
                if self._peer_closed():
                    return False
                # Bytes are waiting (a pipelined request): not a hang-up, but do not spin.
                sim.wait(wait)

    def _peer_closed(self) -> bool:
        connection = self.connection
        if isinstance(connection, ssl.SSLSocket):
            # TLS has no peek; a client that left shows up as a write error instead.
            return False
        try:
            return bool(connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    # -- routes

    def do_GET(self) -> None:
        sim = self.server.simulator
        if self.path == "/_admin/stats":
            self._json(HTTPStatus.OK, sim.stats())
        elif self.path == "/_admin/faults":
            self._json(HTTPStatus.OK, sim.faults.as_dict())
        elif self.path in ("/", "/_admin/health"):
            self._json(HTTPStatus.OK, {"status": "ok", "url": sim.url, "families": sim.families()})
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
            reply = sim.handle_soap(body, self.path, self.headers.get("SOAPAction"))
        except Drop:
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
