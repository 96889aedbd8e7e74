"""Domain errors: each carries a stable code, an HTTP status and the fields at fault.

Handlers turn them into `{"error": {"code", "message", "details": [{"field", "message"}]}}`
in one place (nfse_core.http); domain code only raises them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(slots=True)
class NfseError(Exception):
    """Base of every error the platform reports to a client."""

    message: str
    details: list[FieldError] = field(default_factory=list)
    code: str = "INTERNAL_ERROR"
    status: int = 500

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [d.as_dict() for d in self.details],
            }
        }


class ValidationFailed(NfseError):
    """400: the request breaks one or more domain rules; every bad field is listed."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "VALIDATION_FAILED", 400)


class MalformedRequest(NfseError):
    """400: the body is not JSON, or not a JSON object."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "MALFORMED_REQUEST", 400)


class Unauthorized(NfseError):
    """401: no usable identity (missing or invalid token, no tenant claim)."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "UNAUTHORIZED", 401)


class Forbidden(NfseError):
    """403: the tenant does not own the CNPJ it asked to emit for."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "FORBIDDEN", 403)


class NotFound(NfseError):
    """404: unknown invoice, or one that belongs to another tenant (never told apart)."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "NOT_FOUND", 404)


class IdempotencyConflict(NfseError):
    """409: the Idempotency-Key was used before with a different body, or is in flight."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "IDEMPOTENCY_CONFLICT", 409)


class PayloadTooLarge(NfseError):
    """413: the body is larger than the API accepts."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "PAYLOAD_TOO_LARGE", 413)


class UnsupportedMediaType(NfseError):
    """415: the body is not application/json."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "UNSUPPORTED_MEDIA_TYPE", 415)


class SchemaInvalid(NfseError):
    """422: the RPS document built from a valid request fails the ABRASF XSD."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "XSD_INVALID", 422)


class NotSupportedByProvider(NfseError):
    """422: a valid request asks for something the municipality's provider cannot carry (an
    LC 116 item its schema lacks); nothing is numbered or written."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "NOT_SUPPORTED_BY_PROVIDER", 422)


class ServiceUnavailable(NfseError):
    """503: a dependency failed; nothing was accepted, the client may retry with the same key."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, list(details or []), "SERVICE_UNAVAILABLE", 503)
