"""Invoice ids: ULIDs (26 characters, Crockford base32), so ids sort by creation time.

`is_invoice_id` lets GET turn away garbage before it costs a DynamoDB read.
"""

from __future__ import annotations

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
