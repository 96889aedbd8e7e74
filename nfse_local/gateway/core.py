"""The Gateway: routes each request, authorizes it, and invokes the route's function."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

from nfse_local.auth import JwtVerifier
from nfse_local.gateway.answers import Answer, error_answer, proxy_response_answer
from nfse_local.gateway.authorizer import Authorizer
from nfse_local.gateway.events import Request, RouteMatch, Stage, proxy_event
from nfse_local.gateway.http_server import GatewayHttpServer, make_request_handler
from nfse_local.gateway.routes import Route, RouteError, load_routes
from nfse_local.lifecycle import StartStop
from nfse_local.runtime import InvocationFailed

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's hard limit for a REST API request

log = logging.getLogger("nfse_local.gateway")


class Invocable(Protocol):
    """What the gateway invokes for a route: nfse_local.runtime.FunctionProcess."""

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any: ...


class Gateway(StartStop):
    """Serves the contract's routes on 127.0.0.1 by invoking each route's function (the
    template's logical id -> a `FunctionProcess`, or anything with its `invoke`)."""

    def __init__(  # noqa: PLR0913 - keyword-only settings of the API's stage
        self,
        *,
        api_keys: Sequence[str],
        verifier: JwtVerifier | None,
        functions: Mapping[str, Invocable],
        routes: Sequence[Route] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "local",
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        self.routes = list(routes) if routes is not None else load_routes()
        self._authorizer = Authorizer(api_keys, verifier)
        self._functions = dict(functions)
        self._host = host
        self._port = port
        self.stage = stage
        self.max_payload_bytes = max_payload_bytes
        self._access_log = access_log or log.info
        self._server: GatewayHttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        missing = sorted({r.function_name for r in self.routes} - set(self._functions))
        if missing:
            raise RouteError(f"no function to invoke for {missing}")
        server = GatewayHttpServer((self._host, self._port), make_request_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="local-gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def wrap_functions(self, wrap: Callable[[str, Invocable], Invocable]) -> None:
        """Replace each function with `wrap(name, function)`, e.g. to time its invocations."""
        self._functions = {name: wrap(name, fn) for name, fn in self._functions.items()}

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- requests

    def dispatch(self, request: Request) -> Answer:
        """Answer one request (the HTTP layer has already enforced the payload limit)."""
        split = urlsplit(request.target)
        path = split.path or "/"
        candidates = [(route, route.match(path)) for route in self.routes]
        on_path = [(route, params) for route, params in candidates if params is not None]
        chosen = next(((r, p) for r, p in on_path if r.method == request.method), None)
        if chosen is None:
            allow = sorted({route.method for route, _ in on_path})
            return error_answer(
                404,
                "NOT_FOUND",
                "No such route",
                [("path", "unknown") if not allow else ("method", f"{request.method} not served")],
                [("Allow", ", ".join(allow))] if allow else [],
            )
        route, params = chosen
        identity = self._authorizer.authorize(route, request)
        if isinstance(identity, Answer):
            return identity
        port = self.url.rsplit(":", 1)[1] if self._server else "80"
        match = RouteMatch(route, path, split.query, params or {})
        event = proxy_event(match, request, identity, Stage(self.stage, port))
        return self._invoke(route, event)

    def _invoke(self, route: Route, event: dict[str, Any]) -> Answer:
        request_id = event["requestContext"]["requestId"]
        try:
            response = self._functions[route.function_name].invoke(event, request_id=request_id)
            answer = proxy_response_answer(response)
        except InvocationFailed as failure:  # raised, timed out or died: API Gateway says 502
            log.warning("%s failed: %s", route.function_name, failure)
            answer = _function_failed(route)
        except Exception:  # not a proxy response
            log.error("%s failed:\n%s", route.function_name, traceback.format_exc())
            answer = _function_failed(route)
        answer.headers.append(("x-amzn-RequestId", request_id))
        return answer

    def log_access(self, method: str, target: str, status: int, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        self._access_log(f"{method} {urlsplit(target).path} {status} {elapsed_ms:.1f}ms")


def _function_failed(route: Route) -> Answer:
    return error_answer(502, "INTERNAL_ERROR", f"{route.function_name} failed; see the gateway log")
