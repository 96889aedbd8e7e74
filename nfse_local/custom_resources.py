"""CloudFormation's side of a custom resource, on 127.0.0.1: the request it sends a function, and
the presigned ResponseURL it waits on (a loopback HTTP server that records every PUT).

The local stack runs MigrateFn once at start this way (nfse_local.stack), and the tests use it
to read what the handler answered, over real HTTP.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STACK_ID = (
    "arn:aws:cloudformation:us-east-1:123456789012:stack/nfse/00000000-0000-0000-0000-000000000000"
)


@dataclass(frozen=True)
class ReceivedAnswer:
    """One PUT to the ResponseURL."""

    path: str
    headers: Mapping[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.raw)
        return answer


class ResponseCatcher:
    """A loopback stand-in for the ResponseURL. `failures` first PUTs are answered 500 (S3
    having a bad moment), the rest 200; every PUT is recorded."""

    def __init__(self, failures: int = 0) -> None:
        self.answers: list[ReceivedAnswer] = []
        self._failures = failures
        self._arrived = threading.Condition()
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status = catcher._record(self.path, dict(self.headers.items()), raw)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> int:
        with self._arrived:
            if self._failures > 0:
                self._failures -= 1
                return 500
            self.answers.append(ReceivedAnswer(path, headers, raw))
            self._arrived.notify_all()
            return 200

    def url(self, path: str = "/response") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[ReceivedAnswer]:
        """The answers once `count` have arrived; TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.answers) >= count, timeout):
                raise TimeoutError(f"{len(self.answers)} of {count} answers arrived")
            return list(self.answers)

    def start(self) -> ResponseCatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ResponseCatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cfn_request(  # noqa: PLR0913 - keyword-only: the fields of CloudFormation's request
    request_type: str,
    response_url: str,
    *,
    logical_resource_id: str,
    resource_type: str,
    service_token: str,
    properties: Mapping[str, Any] | None = None,
    old_properties: Mapping[str, Any] | None = None,
    physical_resource_id: str | None = None,
    stack_id: str = STACK_ID,
) -> dict[str, Any]:
    """The event CloudFormation sends a custom resource's function (Lambda, asynchronously)."""
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": service_token,
        "ResponseURL": response_url,
        "StackId": stack_id,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": logical_resource_id,
        "ResourceType": resource_type,
        "ResourceProperties": {"ServiceToken": service_token, **dict(properties or {})},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = physical_resource_id or ""
    if request_type == "Update":
        event["OldResourceProperties"] = {
            "ServiceToken": service_token,
            **dict(old_properties or {}),
        }
    return event
