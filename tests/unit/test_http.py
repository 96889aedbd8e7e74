"""Request checks at the HTTP edge: content type, size, JSON, identity; errors as bodies."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from nfse_core.domain.errors import (
    FieldError,
    MalformedRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from nfse_core.http import canonical_json, error_response, read_json_body, tenant_of

pytestmark = pytest.mark.unit


def event(
    body: str | None, content_type: str | None = "application/json", **extra: Any
) -> dict[str, Any]:
    headers = {"content-type": content_type} if content_type else {}
    return {"headers": headers, "body": body, **extra}


def test_numbers_are_decimal_never_float() -> None:
    parsed = read_json_body(event('{"total": 1500.10, "n": 3}'), max_bytes=1000)
    assert parsed == {"total": Decimal("1500.10"), "n": 3}
    assert isinstance(parsed["total"], Decimal)


def test_content_type_with_charset_is_accepted_any_case() -> None:
    ev = event("{}", "Application/JSON; charset=utf-8")
    assert read_json_body(ev, max_bytes=10) == {}


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/xml", "application/jsonx"]
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        read_json_body(event("{}", content_type), max_bytes=10)
    assert caught.value.status == 415
    assert caught.value.details[0].field == "Content-Type"


def test_body_over_the_limit_is_413_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        read_json_body(event('{"a": "' + "x" * 100 + '"}'), max_bytes=50)
    assert caught.value.status == 413


def test_base64_body_is_decoded_and_measured_decoded() -> None:
    raw = json.dumps({"a": 1}).encode()
    ev = event(base64.b64encode(raw).decode(), isBase64Encoded=True)
    assert read_json_body(ev, max_bytes=len(raw)) == {"a": 1}
    with pytest.raises(MalformedRequest):
        read_json_body(event("***", isBase64Encoded=True), max_bytes=100)


@pytest.mark.parametrize("body", ["", "{", "[1, 2]", '"text"', "NaN", '{"a": NaN}', "\xff"])
def test_malformed_or_non_object_json_is_400(body: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        read_json_body(event(body), max_bytes=100)
    assert caught.value.status == 400 and caught.value.code == "MALFORMED_REQUEST"


def test_tenant_comes_from_the_cognito_claim() -> None:
    ev = {"requestContext": {"authorizer": {"claims": {"custom:tenant_id": " acme "}}}}
    assert tenant_of(ev) == "acme"


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"authorizer": None},
        {"authorizer": {"claims": {}}},
        {"authorizer": {"claims": {"custom:tenant_id": ""}}},
    ],
)
def test_missing_tenant_is_401(context: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized) as caught:
        tenant_of({"requestContext": context})
    assert caught.value.status == 401


def test_canonical_json_ignores_order_and_spacing() -> None:
    a = json.loads('{"b": 1, "a": {"y": 2, "x": 1}}', parse_float=Decimal)
    b = json.loads('{ "a": {"x": 1, "y": 2}, "b": 1 }', parse_float=Decimal)
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json({"t": Decimal("1.50")}) != canonical_json({"t": Decimal("1.5")})


def test_error_response_has_the_stable_body() -> None:
    exc = ValidationFailed("bad", [FieldError("cnpj", "check digits"), FieldError("total", "> 0")])
    response = error_response(exc)
    assert response.status_code == 400
    assert json.loads(response.body or "") == {
        "error": {
            "code": "VALIDATION_FAILED",
            "message": "bad",
            "details": [
                {"field": "cnpj", "message": "check digits"},
                {"field": "total", "message": "> 0"},
            ],
        }
    }
