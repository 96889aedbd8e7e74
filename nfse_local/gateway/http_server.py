"""The gateway's HTTP side: reading bodies within the payload limit, writing answers."""

from __future__ import annotations

import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from nfse_local.gateway.answers import Answer, error_answer
from nfse_local.gateway.events import Request

if TYPE_CHECKING:
    from nfse_local.gateway.core import Gateway

log = logging.getLogger("nfse_local.gateway")


class GatewayHttpServer(ThreadingHTTPServer):
    """A threading HTTP server with room for bursts of clients."""

    # The standard listen backlog is 5: a burst of clients (20 parallel POSTs) got resets.
    request_queue_size = 128
    daemon_threads = True


class _PayloadTooLarge(Exception):
    pass


_DRAIN_LIMIT_FACTOR = 4  # a too-large body is read and dropped up to 4x the limit


def make_request_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    """The request handler class serving `gateway`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self) -> str:
            return "nfse-local-gateway"

        def _serve(self) -> None:
            started = time.monotonic()
            try:
                body = self._read_body()
            except _PayloadTooLarge:
                answer = error_answer(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    "Request body too large",
                    [("body", f"at most {gateway.max_payload_bytes} bytes")],
                )
                answer.close = True
            except ValueError as exc:
                answer = error_answer(400, "MALFORMED_REQUEST", str(exc), [("body", "unreadable")])
                answer.close = True
            else:
                request = Request(
                    method=self.command,
                    target=self.path,
                    headers=list(self.headers.items()),
                    body=body,
                    source_ip=str(self.client_address[0]),
                )
                answer = gateway.dispatch(request)
            self._send(answer)
            gateway.log_access(self.command, self.path, answer.status, started)

        def _read_body(self) -> bytes:
            limit = gateway.max_payload_bytes
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked(limit)
            length_text = self.headers.get("Content-Length")
            if not length_text:
                return b""
            try:
                length = int(length_text)
            except ValueError:
                raise ValueError("Content-Length is not a number") from None
            if length < 0:
                raise ValueError("Content-Length is negative")
            if length > limit:
                # Read what the client is sending before answering (up to a bound): closing
                # on a client still writing resets the connection, and it never sees the 413.
                if length <= _DRAIN_LIMIT_FACTOR * limit:
                    remaining = length
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                raise _PayloadTooLarge
            return self.rfile.read(length)

        def _read_chunked(self, limit: int) -> bytes:
            data = bytearray()
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise ValueError("bad chunk size") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    break
                total += size
                if total > _DRAIN_LIMIT_FACTOR * limit:
                    raise _PayloadTooLarge
                chunk = self.rfile.read(size)
                if total <= limit:  # past the limit, chunks are read and dropped (see above)
                    data += chunk
                self.rfile.readline(8)  # CRLF after the chunk
            if total > limit:
                raise _PayloadTooLarge
            return bytes(data)

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers:
                if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

        def __getattr__(self, name: str) -> Any:
            # http.server answers a method without a do_<METHOD> (TRACE, CONNECT, PROPFIND,
            # any token) with its own 501 HTML page; API Gateway answers it as an unknown
            # route. Every method goes through _serve, which gives the 404 with the error body.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

    return Handler
