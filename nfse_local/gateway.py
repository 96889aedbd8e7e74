"""The local API Gateway: routes from api/openapi.yaml, API key, Cognito JWT, proxy events.

It does what the deployed REST API does in front of the functions, on 127.0.0.1: matches the
path and method against the contract, checks `x-api-key` and the Cognito ID token, enforces
the 10 MB payload limit, builds the REST API (v1) proxy event and invokes the function, each
in its own process with its own role (nfse_local.runtime), as API Gateway invokes Lambda. Its
own refusals use the platform's error body, as the template's GatewayResponses make API
Gateway do:

    413 PAYLOAD_TOO_LARGE  body over 10 MB (checked first, before the body is read)
    404 NOT_FOUND          no such route, or a method the path does not have (API Gateway says
                           MissingAuthenticationToken for both; the template maps it to 404, so
                           the local gateway gives 404 too, with an Allow header when the path
                           exists)
    403 FORBIDDEN          x-api-key missing or wrong
    401 UNAUTHORIZED       no token, or one that fails verification (expired, foreign, forged)
    502 INTERNAL_ERROR     the function raised, timed out or died, or answered with something
                           that is not a proxy response ("malformed Lambda proxy response")

Each function runs one request at a time (as one warm Lambda execution environment would).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from nfse_local.auth import JwtVerifier, MissingToken, TokenError, bearer_token
from nfse_local.cfn import load_template
from nfse_local.runtime import InvocationFailed

ROOT = Path(__file__).resolve().parent.parent
OPENAPI_PATH = ROOT / "api" / "openapi.yaml"
TEMPLATE_PATH = ROOT / "template.yaml"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's hard limit for a REST API request
API_KEY_HEADER = "x-api-key"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# When the contract names no function for an operation (or the template cannot be read).
OPERATION_HANDLERS: dict[str, str] = {
    "emitInvoice": "functions.emit.app:handler",
    "getInvoice": "functions.get.app:handler",
}
_ARN_REF = re.compile(r"\$\{(\w+)\.Arn\}")
_PATH_PARAM = re.compile(r"\{(\w+)(\+?)\}")

log = logging.getLogger("nfse_local.gateway")


class Invocable(Protocol):
    """What the gateway invokes for a route: nfse_local.runtime.FunctionProcess."""

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any: ...


class RouteError(RuntimeError):
    """The contract names an operation the gateway cannot map to a handler."""


# ----------------------------------------------------------------------------- routes ---


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # upper case
    resource: str  # the contract's path template, e.g. /invoices/{invoiceId}
    operation_id: str
    function_name: str  # the template's logical id, e.g. EmitFn
    handler_ref: str  # "functions.emit.app:handler"
    requires_api_key: bool
    requires_token: bool
    pattern: re.Pattern[str] = field(compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def function_handlers(template_path: Path = TEMPLATE_PATH) -> dict[str, str]:
    """Logical id -> "module:attr" for every AWS::Serverless::Function with a local CodeUri."""
    try:
        template = load_template(template_path)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s (%s); using the built-in handler table", template_path, exc)
        return {}
    handlers: dict[str, str] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            continue
        package = ".".join(part for part in code_uri.strip("./").split("/") if part)
        module, attr = handler.rsplit(".", 1)
        handlers[logical_id] = f"{package}.{module}:{attr}"
    return handlers


def _integration_function(operation: Mapping[str, Any]) -> str | None:
    uri = (operation.get("x-amazon-apigateway-integration") or {}).get("uri")
    text = json.dumps(uri) if uri is not None else ""
    found = _ARN_REF.search(text)
    return found.group(1) if found else None


def _security_needs(
    security: Sequence[Mapping[str, Any]], schemes: Mapping[str, Any]
) -> tuple[bool, bool]:
    """(api key, Cognito token) required by an OpenAPI security requirement list."""
    api_key = token = False
    # Every scheme named in the first requirement applies (API Gateway takes them together).
    for requirement in security[:1]:
        for name in requirement:
            scheme = schemes.get(name) or {}
            if scheme.get("x-amazon-apigateway-authtype") == "cognito_user_pools":
                token = True
            elif (
                scheme.get("type") == "apiKey" and str(scheme.get("name")).lower() == API_KEY_HEADER
            ):
                api_key = True
    return api_key, token


def _path_pattern(resource: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for param in _PATH_PARAM.finditer(resource):
        parts.append(re.escape(resource[position : param.start()]))
        parts.append(f"(?P<{param.group(1)}>{'.+' if param.group(2) else '[^/]+'})")
        position = param.end()
    parts.append(re.escape(resource[position:]))
    return re.compile("".join(parts))


def load_routes(
    openapi_path: Path = OPENAPI_PATH, template_path: Path = TEMPLATE_PATH
) -> list[Route]:
    """Every operation of the contract, with the handler that serves it."""
    spec = yaml.safe_load(openapi_path.read_text())
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    default_security = spec.get("security") or []
    handlers = function_handlers(template_path)
    routes: list[Route] = []
    for resource, item in (spec.get("paths") or {}).items():
        for method in HTTP_METHODS:
            operation = (item or {}).get(method)
            if not isinstance(operation, dict):
                continue
            operation_id = str(operation.get("operationId") or f"{method} {resource}")
            function = _integration_function(operation)
            handler_ref = handlers.get(function or "") or OPERATION_HANDLERS.get(operation_id)
            if handler_ref is None:
                raise RouteError(f"{method.upper()} {resource}: no function serves {operation_id}")
            api_key, token = _security_needs(operation.get("security", default_security), schemes)
            routes.append(
                Route(
                    method=method.upper(),
                    resource=resource,
                    operation_id=operation_id,
                    function_name=function or operation_id,
                    handler_ref=handler_ref,
                    requires_api_key=api_key,
                    requires_token=token,
                    pattern=_path_pattern(resource),
                )
            )
    return routes


# --------------------------------------------------------------------------- answers ---


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


def error_answer(
    status: int,
    code: str,
    message: str,
    details: Sequence[tuple[str, str]] = (),
    headers: Sequence[tuple[str, str]] = (),
) -> Answer:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": f, "message": m} for f, m in details],
        }
    }
    return Answer(
        status,
        json.dumps(body).encode(),
        [("Content-Type", "application/json"), ("x-amzn-ErrorType", code), *headers],
    )


def _claim_text(name: str, value: Any) -> str:
    """API Gateway hands the authorizer's claims to the function as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in {"exp", "iat", "auth_time"} and isinstance(value, int | float):
        return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(value))
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def proxy_response_answer(response: Any) -> Answer:
    """A Lambda proxy response as HTTP; ValueError when it is not one."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        raise ValueError("the function's answer has no integer statusCode")
    status: int = response["statusCode"]
    if not 100 <= status <= 599:
        raise ValueError(f"statusCode {status} is not an HTTP status")
    body = response.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    else:
        raise ValueError("the function's body is not a string")
    headers: list[tuple[str, str]] = []
    multi = response.get("multiValueHeaders") or {}
    for name, value in (response.get("headers") or {}).items():
        if name not in multi:
            headers.append((str(name), str(value)))
    for name, values in multi.items():
        headers.extend((str(name), str(value)) for value in values or [])
    return Answer(status, data, headers)


# --------------------------------------------------------------------------- gateway ---


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # path and query as sent
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


class _Server(ThreadingHTTPServer):
    # The standard listen backlog is 5: a burst of clients (20 parallel POSTs) got resets.
    request_queue_size = 128
    daemon_threads = True


class Gateway:
    """Serves the contract's routes on 127.0.0.1 by invoking each route's function (the
    template's logical id -> a `FunctionProcess`, or anything with its `invoke`)."""

    def __init__(
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
        # Every tenant's key (one usage plan each, deployed); any of them opens the API, as
        # API Gateway accepts any key of a usage plan on the stage; the JWT says who calls.
        self._api_keys = tuple(sorted({k.encode() for k in api_keys if k}))
        self._verifier = verifier
        self._functions = dict(functions)
        self._host = host
        self._port = port
        self.stage = stage
        self.max_payload_bytes = max_payload_bytes
        self._access_log = access_log or log.info
        self._server: ThreadingHTTPServer | None = None
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
        server = _Server((self._host, self._port), _make_request_handler(self))
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
        api_key = request.header(API_KEY_HEADER)
        if route.requires_api_key:
            refused = self._check_api_key(api_key)
            if refused is not None:
                return refused
        claims: dict[str, Any] = {}
        if route.requires_token:
            checked = self._check_token(request.header("Authorization"))
            if isinstance(checked, Answer):
                return checked
            claims = checked
        event = self.proxy_event(
            route,
            request=request,
            path=path,
            query=split.query,
            params=params or {},
            claims=claims,
            api_key=api_key,
        )
        return self._invoke(route, event)

    def _check_api_key(self, api_key: str | None) -> Answer | None:
        if not api_key:
            return error_answer(
                403, "FORBIDDEN", "Missing or invalid API key", [(API_KEY_HEADER, "required")]
            )
        sent = api_key.encode()
        # Compared with every key, not stopping at a match: the time taken does not tell which
        # key (or how many) a guess came near.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(sent, key)
        if not matched:
            return error_answer(
                403, "FORBIDDEN", "Missing or invalid API key", [(API_KEY_HEADER, "invalid")]
            )
        return None

    def _check_token(self, authorization: str | None) -> dict[str, Any] | Answer:
        if self._verifier is None:
            raise RouteError("a route needs a Cognito token but the gateway has no verifier")
        try:
            return self._verifier.verify(bearer_token(authorization))
        except MissingToken:
            return error_answer(
                401,
                "UNAUTHORIZED",
                "Missing or invalid identity token",
                [("Authorization", "required")],
            )
        except TokenError as exc:
            return error_answer(
                401,
                "UNAUTHORIZED",
                "Missing or invalid identity token",
                [("Authorization", exc.reason)],
            )

    def proxy_event(
        self,
        route: Route,
        *,
        request: Request,
        path: str,
        query: str,
        params: dict[str, str],
        claims: Mapping[str, Any],
        api_key: str | None,
    ) -> dict[str, Any]:
        """The REST API (payload v1) proxy event API Gateway would send for this request."""
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        forwarded = {
            "X-Forwarded-For": request.source_ip,
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Port": self.url.rsplit(":", 1)[1] if self._server else "80",
        }
        for name, value in forwarded.items():
            if request.header(name) is None:
                headers[name] = value
                multi_headers[name] = [value]
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        try:
            body: str | None = request.body.decode("utf-8") if request.body else None
            is_base64 = False
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(request.body).decode(), True
        now = time.time()
        request_id = str(uuid.uuid4())
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": route.operation_id,
                "resourcePath": route.resource,
                "operationName": route.operation_id,
                "httpMethod": request.method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "protocol": "HTTP/1.1",
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": request.header("Host") or "127.0.0.1",
                "identity": {
                    "sourceIp": request.source_ip,
                    "userAgent": request.header("User-Agent"),
                    "apiKey": api_key,
                    "apiKeyId": "local-api-key" if api_key else None,
                },
                "authorizer": {"claims": {k: _claim_text(k, v) for k, v in claims.items()}}
                if claims
                else None,
            },
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def _invoke(self, route: Route, event: dict[str, Any]) -> Answer:
        request_id = event["requestContext"]["requestId"]
        try:
            response = self._functions[route.function_name].invoke(event, request_id=request_id)
            answer = proxy_response_answer(response)
        except InvocationFailed as failure:  # raised, timed out or died: API Gateway says 502
            log.warning("%s failed: %s", route.function_name, failure)
            answer = error_answer(
                502, "INTERNAL_ERROR", f"{route.function_name} failed; see the gateway log"
            )
        except Exception:  # not a proxy response
            log.error("%s failed:\n%s", route.function_name, traceback.format_exc())
            answer = error_answer(
                502, "INTERNAL_ERROR", f"{route.function_name} failed; see the gateway log"
            )
        answer.headers.append(("x-amzn-RequestId", request_id))
        return answer

    def log_access(self, method: str, target: str, status: int, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        self._access_log(f"{method} {urlsplit(target).path} {status} {elapsed_ms:.1f}ms")


# ------------------------------------------------------------------------------ HTTP ---


class _PayloadTooLarge(Exception):
    pass


_DRAIN_LIMIT_FACTOR = 4  # a too-large body is read and dropped up to 4x the limit


def _make_request_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
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
