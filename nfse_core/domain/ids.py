"""Invoice ids: 26 characters of Crockford base32, the shape of a ULID.

Without an idempotency key an id is a fresh ULID (it sorts by creation time). With one, the id
is derived from the tenant and the key (`keyed_invoice_id`), so every retry of a request lands
on the same invoice, whatever happened to the first attempt (a lost answer, a Lambda that died
after the invoice was recorded) and however long ago: never a second invoice, never a second
RPS for one key. `is_invoice_id` lets GET turn away garbage before it costs a DynamoDB read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime

from ulid import ULID

# 48-bit time + 80 random bits = 128 bits in 26 base32 digits, so the first is at most 7.
# Crockford's alphabet leaves out I, L, O and U. Only the canonical upper case is accepted:
# the id is a DynamoDB key, and keys are case-sensitive.
_ULID_SHAPE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def new_invoice_id(now: datetime | None = None) -> str:
    """A fresh ULID; `now` (timezone-aware) fixes its time part, for tests and replays."""
    if now is None:
        return str(ULID())
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return str(ULID.from_datetime(now))


def invoice_ids(clock: Callable[[], datetime]) -> Callable[[], str]:
    """An id generator reading the time from `clock` (what services take as `new_id`)."""

    def new_id() -> str:
        return new_invoice_id(clock())

    return new_id


def is_invoice_id(value: object) -> bool:
    """True for a canonical ULID string; cheap, no parsing beyond one regex."""
    return isinstance(value, str) and _ULID_SHAPE.fullmatch(value) is not None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def idempotency_scope(tenant: str, key: str) -> str:
    """One unambiguous string for (tenant, key): length-prefixed, so no tenant id or key, whatever
    characters they hold ('#' included), can make two different pairs meet."""
    return f"{len(tenant)}:{tenant}|{len(key)}:{key}"


def keyed_invoice_id(tenant: str, key: str) -> str:
    """The invoice id of the request (tenant, Idempotency-Key): 128 bits of SHA-256 over the
    scope, written as a canonical ULID-shaped string (its first digit is at most 7)."""
    digest = hashlib.sha256(b"nfse-invoice-id\0" + idempotency_scope(tenant, key).encode())
    value = int.from_bytes(digest.digest()[:16], "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
