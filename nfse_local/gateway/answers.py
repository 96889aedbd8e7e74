"""What the gateway answers: its own refusals in the platform's error body (as the template's
GatewayResponses make API Gateway do), and a function's Lambda proxy response as HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Answer:
    """One HTTP answer of the gateway."""

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
    """A refusal in the platform's error body, its code also in x-amzn-ErrorType."""
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
