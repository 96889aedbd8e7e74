"""HTTP edge of the API handlers: request checks, identity, and errors as answers, in one place."""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Any

from aws_lambda_powertools.event_handler import Response

from nfse_core.domain.errors import (
    FieldError,
    MalformedRequest,
    NfseError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

TENANT_CLAIM = "custom:tenant_id"
JSON_TYPE = "application/json"


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == wanted:
            return value
    return None


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header, case-insensitively (API Gateway keeps the client's spelling)."""
    return _header(event.get("headers"), name)


def tenant_of(event: dict[str, Any]) -> str:
    """The tenant from the Cognito claims API Gateway's authorizer put in the request context."""
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("claims") or {}
    tenant = claims.get(TENANT_CLAIM) if isinstance(claims, dict) else None
    if not isinstance(tenant, str) or not tenant.strip():
        raise Unauthorized(
            "The token carries no tenant", [FieldError("Authorization", f"claim {TENANT_CLAIM}")]
        )
    return tenant.strip()


def _decimal_or_reject(text: str) -> Decimal:
    return Decimal(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def read_json_body(event: dict[str, Any], *, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object with numbers as Decimal; 415, 413 or 400 otherwise."""
    content_type = (header(event, "Content-Type") or "").split(";")[0].strip().lower()
    if content_type != JSON_TYPE:
        raise UnsupportedMediaType(
            "Send the invoice as application/json",
            [FieldError("Content-Type", f"expected {JSON_TYPE}, got {content_type or 'none'}")],
        )
    raw = event.get("body") or ""
    data: bytes
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedRequest("The body is not valid base64") from exc
    else:
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The body has {len(data)} bytes; the limit is {max_bytes}",
            [FieldError("body", f"at most {max_bytes} bytes")],
        )
    try:
        parsed = json.loads(
            data.decode("utf-8"),
            parse_float=_decimal_or_reject,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedRequest(
            "The body is not valid JSON", [FieldError("body", str(exc)[:200])]
        ) from exc
    if not isinstance(parsed, dict):
        raise MalformedRequest(
            "The body must be a JSON object", [FieldError("body", "expected an object")]
        )
    return parsed


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Stable text of a parsed body: key order and spacing never change the idempotency hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON_TYPE,
        body=json.dumps(body, default=_json_default),
        headers=headers or {},
    )


def error_response(exc: NfseError) -> Response[str]:
    return json_response(exc.status, exc.body())


def install_error_handlers(app: Any, logger: Any) -> None:
    """Every answer of a REST resolver carries the error body: refusals, unknown routes, crashes."""

    def on_refusal(exc: NfseError) -> Response[str]:
        logger.info("request refused", extra={"code": exc.code, "status": exc.status})
        return error_response(exc)

    def on_unknown_route(_: Exception) -> Response[str]:
        return error_response(NotFound("No such route", [FieldError("path", "unknown")]))

    def on_crash(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return error_response(NfseError("Internal error; the request may be retried"))

    app.exception_handler(NfseError)(on_refusal)
    app.not_found(on_unknown_route)
    app.exception_handler(Exception)(on_crash)
