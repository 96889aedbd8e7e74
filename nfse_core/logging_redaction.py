"""Log redaction: tomador CPF/CNPJ, e-mail addresses and secrets never reach a log line.

`RedactingFormatter` is a Powertools `LambdaPowertoolsFormatter` that cleans the structured
record (message, extra keys, appended keys, exception text) just before it is serialized, so
every path into the log is covered: the Lambda handlers pass it to `Logger(logger_formatter=...)`
and the worker sets it on its stdout handler. `RedactingFilter` does the same for a plain
`logging` handler.

What is kept: the prestador's `cnpj` field (the platform's own customer, needed to follow an
invoice) and every other field that is not personal data (invoice ids, statuses, codes).
What is masked: `cpfCnpj`, `email` and the whole `tomador` subtree; CPF/CNPJ numbers and
e-mail addresses inside any other string (messages, exception text); secrets by field name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

MASK = "***"
CPF_MASK = "***.***.***-**"
CNPJ_MASK = "**.***.***/****-**"

# Field names, compared lower-case without "_" and "-" (cpfCnpj, cpf_cnpj, CPF-CNPJ...).
# The prestador's CNPJ stays: it identifies the company the platform works for.
KEEP_FIELDS = frozenset({"cnpj", "prestadorcnpj"})
# Personal data of the tomador: the value (and everything under it) is masked.
PERSONAL_FIELDS = frozenset({"cpfcnpj", "cpf", "email", "tomador", "telefone", "phone"})
# Never logged at all, whatever their shape.
SECRET_FIELDS = frozenset(
    {
        "password",
        "senha",
        "pfx",
        "secret",
        "secretstring",
        "privatekey",
        "authorization",
        "xapikey",
        "apikey",
        "token",
        "idtoken",
        "xoriginverify",
    }
)

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# CNPJ, numeric or the alphanumeric form of July 2026 (12 alphanumerics + 2 check digits),
# with or without punctuation. Checked before CPF so a CNPJ is not cut into a CPF.
_CNPJ = re.compile(r"(?<!\w)[0-9A-Z]{2}\.?[0-9A-Z]{3}\.?[0-9A-Z]{3}/?[0-9A-Z]{4}-?\d{2}(?!\w)")
_CPF = re.compile(r"(?<!\w)\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?!\w)")


def _field(name: object) -> str:
    return str(name).lower().replace("_", "").replace("-", "")


def _is_cnpj(text: str) -> bool:
    # An alphanumeric CNPJ has at least one digit before the check digits; a 14-letter
    # upper-case word that happens to end in two digits is rare, but do not mask plain words.
    return any(c.isdigit() for c in text[:-2])


def _mask_email(match: re.Match[str]) -> str:
    return f"{MASK}@{match.group(1)}"


def _mask_cnpj(match: re.Match[str]) -> str:
    return CNPJ_MASK if _is_cnpj(match.group(0)) else match.group(0)


def mask_text(text: str) -> str:
    """E-mail addresses (the domain stays), CNPJs and CPFs inside free text."""
    text = _EMAIL.sub(_mask_email, text)
    text = _CNPJ.sub(_mask_cnpj, text)
    return _CPF.sub(CPF_MASK, text)


def _mask_personal(value: Any) -> Any:
    """Everything under a personal field: strings never survive (an e-mail keeps its domain)."""
    if isinstance(value, Mapping):
        return {k: _mask_personal(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_personal(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    text = str(value)
    email = _EMAIL.fullmatch(text)
    return f"{MASK}@{email.group(1)}" if email else MASK


def redact(value: Any, field: str | None = None) -> Any:
    """A copy of `value` (a log record, a message...) with personal data and secrets masked."""
    name = _field(field) if field is not None else ""
    if name in SECRET_FIELDS:
        return MASK
    if name in PERSONAL_FIELDS:
        return _mask_personal(value)
    if name in KEEP_FIELDS and isinstance(value, str):
        return value
    return _redact_by_type(value)


def _redact_by_type(value: Any) -> Any:
    """`value` redacted by what it is: containers item by item, text by its patterns."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, BaseException):
        return mask_text(str(value))
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter that redacts the whole record before it is serialized."""

    def serialize(self, log: Any) -> str:
        return super().serialize(redact(log))


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactingFilter(logging.Filter):
    """For plain `logging` handlers: masks the rendered message and every `extra=` value."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, Mapping):
            record.msg = mask_text(record.getMessage())
            record.args = None
        else:
            record.msg = redact(record.msg)
        for key in [k for k in vars(record) if k not in _RECORD_ATTRS]:
            setattr(record, key, redact(getattr(record, key), key))
        return True
