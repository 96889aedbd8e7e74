"""The REST API (payload v1) proxy event API Gateway sends a function for a request."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from nfse_local.gateway.routes import Route


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the gateway got it."""

    method: str
    target: str  # path and query as sent
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str

    def header(self, name: str) -> str | None:
        """The last value of header `name` (any case), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request's path and method chose, with what the path held."""

    route: Route
    path: str
    query: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who calls, as the authorizer saw it: the API key sent and the token's claims."""

    api_key: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stage:
    """Where the gateway serves: its stage name and port (for X-Forwarded-Port)."""

    name: str
    port: str


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


def proxy_event(
    match: RouteMatch, request: Request, identity: Identity, stage: Stage
) -> dict[str, Any]:
    """The REST API (payload v1) proxy event API Gateway would send for this request."""
    route, path = match.route, match.path
    claims, api_key = identity.claims, identity.api_key
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    forwarded = {
        "X-Forwarded-For": request.source_ip,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": stage.port,
    }
    for name, value in forwarded.items():
        if request.header(name) is None:
            headers[name] = value
            multi_headers[name] = [value]
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(match.query, keep_blank_values=True):
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
        "pathParameters": match.params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": route.operation_id,
            "resourcePath": route.resource,
            "operationName": route.operation_id,
            "httpMethod": request.method,
            "path": f"/{stage.name}{path}",
            "stage": stage.name,
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
