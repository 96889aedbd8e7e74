"""Turn a decoded JSON body into an InvoiceRequest, or one ValidationFailed listing every bad field.

Each FieldError names the field by its dotted JSON path with the camelCase names of the API
("tomador.endereco.cep"); messages are the project's own, stable across pydantic versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from nfse_core.domain.errors import FieldError, ValidationFailed
from nfse_core.domain.models import InvoiceRequest

BODY = ""


def parse_invoice_request(data: object, today: date | None = None) -> InvoiceRequest:
    """Validate `data` (the decoded body); `today` overrides the America/Sao_Paulo date."""
    if not isinstance(data, Mapping):
        raise ValidationFailed(
            "The request body must be a JSON object",
            [FieldError(BODY, "must be a JSON object")],
        )
    context = {"today": today} if today is not None else None
    try:
        # by_name=False: the API speaks camelCase only; "cpf_cnpj" from a client is unknown.
        return InvoiceRequest.model_validate(data, context=context, by_alias=True, by_name=False)
    except ValidationError as exc:
        details = field_errors(exc)
        noun = "field is" if len(details) == 1 else "fields are"
        raise ValidationFailed(
            f"The invoice request is invalid: {len(details)} {noun} wrong", details
        ) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    """One FieldError per distinct (path, message), in the order pydantic found them."""
    seen: set[tuple[str, str]] = set()
    details: list[FieldError] = []
    for error in exc.errors(include_url=False, include_input=False):
        for key in _keys(error):
            if key not in seen:
                seen.add(key)
                details.append(FieldError(*key))
    return details


def _keys(error: ErrorDetails) -> list[tuple[str, str]]:
    """(path, message) of one error; a rule over several fields (models._cross_field) names
    each field at fault, relative to the object that holds them."""
    problems = (error.get("ctx") or {}).get("problems")
    if problems:
        return [(json_path([*error["loc"], field]), message) for field, message in problems]
    return [(json_path(error["loc"]), message_for(error))]


def json_path(loc: Sequence[int | str]) -> str:
    """("tomador", "endereco", "cep") -> "tomador.endereco.cep"; list indexes as [n]."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def message_for(error: ErrorDetails) -> str:
    """A stable, human message for one pydantic error; our validators' messages pass through."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if "reason" in ctx:  # raised by nfse_core.domain.models with the client's message
        return str(ctx["reason"])
    fixed = _MESSAGES.get(kind)
    if fixed is not None:
        return fixed
    # too_short/too_long: the generic length checks pydantic uses on optional annotated text.
    if kind in ("string_too_short", "too_short"):
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} characters"
    if kind in ("string_too_long", "too_long"):
        return f"must have at most {ctx.get('max_length')} characters"
    return str(error["msg"])


_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number such as 1234.56",
    "finite_number": "must be a finite number",
    "date_type": "must be a date in the form YYYY-MM-DD",
    "date_parsing": "must be a date in the form YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a date in the form YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a date in the form YYYY-MM-DD",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
}
