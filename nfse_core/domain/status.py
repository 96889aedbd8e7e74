"""Invoice statuses and the only moves between them (enforced by conditional writes)."""

from __future__ import annotations

from enum import StrEnum


class InvoiceStatus(StrEnum):
    EMITTED = "EMITTED"
    PROCESSING = "PROCESSING"
    ISSUED = "ISSUED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Rank orders statuses so stores can refuse a backward move with one comparison
# (DynamoDB ConditionExpression, SQL `WHERE rank < EXCLUDED.rank`).
RANK: dict[InvoiceStatus, int] = {
    InvoiceStatus.EMITTED: 0,
    InvoiceStatus.PROCESSING: 1,
    InvoiceStatus.ISSUED: 2,
    InvoiceStatus.FAILED: 2,
    InvoiceStatus.CANCELLED: 3,
}

# Statuses from which each target may be reached.
ALLOWED_FROM: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.PROCESSING: frozenset({InvoiceStatus.EMITTED, InvoiceStatus.PROCESSING}),
    InvoiceStatus.ISSUED: frozenset({InvoiceStatus.EMITTED, InvoiceStatus.PROCESSING}),
    InvoiceStatus.FAILED: frozenset({InvoiceStatus.EMITTED, InvoiceStatus.PROCESSING}),
    InvoiceStatus.CANCELLED: frozenset({InvoiceStatus.ISSUED}),
}

FINAL: frozenset[InvoiceStatus] = frozenset(
    {InvoiceStatus.ISSUED, InvoiceStatus.FAILED, InvoiceStatus.CANCELLED}
)
