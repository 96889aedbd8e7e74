"""The invoice ledger (`nfse.invoices`): Aurora PostgreSQL in AWS, PostgreSQL or SQLite locally.

One UPSERT, shared by every executor, records where an invoice stands. The database refuses
a backward move (nfse_core.domain.status.RANK) with one comparison, so writers racing (the
worker and ProcessorFn, an SQS redelivery) cannot undo each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from nfse_core.domain.invoice import InvoiceRecord, flat_values, utc_now
from nfse_core.domain.status import RANK, InvoiceStatus
from nfse_core.store.sql_executors import IntegrityViolation, SqlExecutor

_CENTS = Decimal("0.01")
# numeric(15, 2): thirteen digits before the point.
_TOTAL_LIMIT = Decimal(10) ** 13


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One invoice as the ledger records it: a selection of the invoice's flat values (see
    `of`), plus when the ledger last changed the row."""

    invoice_id: str
    tenant: str
    cnpj: str
    total: Decimal
    status: InvoiceStatus
    created_at: datetime
    municipio: str | None = None
    rps_numero: int | None = None
    rps_serie: str | None = None
    rps_tipo: int | None = None
    provider_protocol: str | None = None
    nfse_number: str | None = None
    verification_code: str | None = None
    xml_key: str | None = None
    signed_key: str | None = None
    nfse_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    processed_at: datetime | None = None
    # Set by the ledger on every write that changes the row; ignored on input.
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", InvoiceStatus(self.status))
        if not isinstance(self.total, Decimal) or not self.total.is_finite():
            raise ValueError(f"total: a finite Decimal is required, got {self.total!r}")
        if self.total != self.total.quantize(_CENTS) or abs(self.total) >= _TOTAL_LIMIT:
            raise ValueError(f"total: at most 13 digits and 2 decimals, got {self.total}")
        for name in ("created_at", "processed_at", "updated_at"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(f"{name}: a timezone-aware datetime is required")
        if self.municipio is not None and len(self.municipio) != 7:
            raise ValueError(f"municipio: an IBGE code has 7 digits, got {self.municipio!r}")

    @property
    def status_rank(self) -> int:
        return RANK[self.status]

    @classmethod
    def of(cls, record: InvoiceRecord) -> LedgerRow:
        """The row of an invoice: its flat values (nfse_core.domain.invoice.flat_values) under
        the ledger's column names."""
        values = flat_values(record)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name != "updated_at"})


class RpsAlreadyRecorded(IntegrityViolation):
    """Another invoice already holds this RPS (cnpj, serie, tipo, numero): never reused."""


def _columns() -> tuple[str, ...]:
    """The table's columns: LedgerRow's fields, with the rank stored beside the status."""
    names: list[str] = []
    for f in fields(LedgerRow):
        names.append(f.name)
        if f.name == "status":
            names.append("status_rank")
    return tuple(names)


_COLUMNS = _columns()
# Facts fixed at emission: the first write wins, later ones cannot rewrite them.
_FIXED = ("tenant", "cnpj", "total", "created_at")
# Known at emission but possibly missing from an early write: filled, never replaced.
_FILL_ONLY = ("municipio", "rps_numero", "rps_serie", "rps_tipo")
# Outcome of a step: a forward move brings newer values (a NULL does not erase an older one);
# a same-status write only fills what is missing.
_PROGRESS = (
    "provider_protocol",
    "nfse_number",
    "verification_code",
    "xml_key",
    "signed_key",
    "nfse_key",
    "processed_at",
)
# Errors belong to the status that reported them: a forward move replaces them, even by NULL
# (an ISSUED row does not keep the error of an earlier attempt).
_ERRORS = ("error_code", "error_message")

_FORWARD = "cur.status_rank < EXCLUDED.status_rank"


def _set_clause(column: str) -> str:
    if column in _FILL_ONLY:
        value = f"COALESCE(cur.{column}, EXCLUDED.{column})"
    elif column in _PROGRESS:
        value = (
            f"CASE WHEN {_FORWARD} THEN COALESCE(EXCLUDED.{column}, cur.{column})"
            f" ELSE COALESCE(cur.{column}, EXCLUDED.{column}) END"
        )
    elif column in _ERRORS:
        value = (
            f"CASE WHEN {_FORWARD} THEN EXCLUDED.{column}"
            f" ELSE COALESCE(cur.{column}, EXCLUDED.{column}) END"
        )
    else:  # status, status_rank, updated_at
        value = f"EXCLUDED.{column}"
    return f"    {column} = {value}"


_REFRESHABLE = (*_FILL_ONLY, *_PROGRESS, *_ERRORS)
_UPDATED = [c for c in _COLUMNS if c != "invoice_id" and c not in _FIXED]

# Decision: a row moves when the new status ranks strictly higher (`<`), which keeps ISSUED
# and FAILED (same rank) from replacing each other: the first final status wins. A write of
# the same status (a redelivery, a reconciliation) only fills columns still NULL, and counts
# as a change only if it filled one. Anything else leaves the row as it is and returns no row.
# RETURNING tells the caller whether the row changed on PostgreSQL, SQLite 3.35+ and the
# Data API alike (rowcount is not part of the executor contract).
UPSERT_SQL = (
    f"INSERT INTO nfse.invoices AS cur ({', '.join(_COLUMNS)})\n"
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)})\n"
    "ON CONFLICT (invoice_id) DO UPDATE SET\n"
    + ",\n".join(_set_clause(c) for c in _UPDATED)
    + f"\nWHERE {_FORWARD}\n"
    + "   OR (cur.status = EXCLUDED.status AND ("
    + "\n        OR ".join(f"(cur.{c} IS NULL AND EXCLUDED.{c} IS NOT NULL)" for c in _REFRESHABLE)
    + "))\nRETURNING invoice_id"
)

_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM nfse.invoices"  # noqa: S608 (constants)
GET_SQL = f"{_SELECT} WHERE invoice_id = :invoice_id"
LIST_BY_STATUS_SQL = (
    f"{_SELECT} WHERE status = :status ORDER BY created_at, invoice_id LIMIT :limit"
)


def _as_decimal(value: Any) -> Decimal:
    # SQLite hands back int/float for its NUMERIC affinity; repr() of a float read from a
    # numeric(15, 2) has at most 15 significant digits, so it is the stored decimal exactly.
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation as error:
        raise ValueError(f"ledger total is not a number: {value!r}") from error
    return number.quantize(_CENTS)


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        # Only SQLite text written by the executor, always UTC, can come back without offset.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def row_from_record(record: Mapping[str, Any]) -> LedgerRow:
    """A LedgerRow from a result row of any executor (typed or SQLite's stored values)."""
    created_at = _as_datetime(record["created_at"])
    if created_at is None:
        raise ValueError("ledger row without created_at")
    return LedgerRow(
        invoice_id=str(record["invoice_id"]),
        tenant=str(record["tenant"]),
        cnpj=str(record["cnpj"]),
        total=_as_decimal(record["total"]),
        status=InvoiceStatus(record["status"]),
        created_at=created_at,
        municipio=_as_str(record["municipio"]),
        rps_numero=_as_int(record["rps_numero"]),
        rps_serie=_as_str(record["rps_serie"]),
        rps_tipo=_as_int(record["rps_tipo"]),
        provider_protocol=_as_str(record["provider_protocol"]),
        nfse_number=_as_str(record["nfse_number"]),
        verification_code=_as_str(record["verification_code"]),
        xml_key=_as_str(record["xml_key"]),
        signed_key=_as_str(record["signed_key"]),
        nfse_key=_as_str(record["nfse_key"]),
        error_code=_as_str(record["error_code"]),
        error_message=_as_str(record["error_message"]),
        processed_at=_as_datetime(record["processed_at"]),
        updated_at=_as_datetime(record["updated_at"]),
    )


def upsert_params(row: LedgerRow, updated_at: datetime) -> dict[str, Any]:
    """The UPSERT's named parameters for `row`, written at `updated_at`."""
    params: dict[str, Any] = {f.name: getattr(row, f.name) for f in fields(row)}
    params["status"] = row.status.value
    params["status_rank"] = row.status_rank
    params["updated_at"] = updated_at
    return params


class Ledger:
    """Records invoices in `nfse.invoices` through any SqlExecutor."""

    def __init__(self, executor: SqlExecutor, clock: Callable[[], datetime] = utc_now) -> None:
        self._executor = executor
        self._clock = clock

    def upsert(self, row: LedgerRow) -> bool:
        """Insert or move the row forward; True when the ledger changed.

        Raises RpsAlreadyRecorded when another invoice holds the same RPS.
        """
        params = upsert_params(row, self._clock())
        try:
            try:
                changed = self._executor.execute(UPSERT_SQL, params)
            except IntegrityViolation:
                # Two first writes of one invoice racing: ON CONFLICT arbitrates only on
                # invoice_id, so PostgreSQL may report the loser on the RPS index instead.
                # The winner has committed by then; run again and ON CONFLICT takes over.
                # A real reuse of an RPS fails the same way twice.
                changed = self._executor.execute(UPSERT_SQL, params)
        except IntegrityViolation as error:
            # Conflicts on invoice_id are the UPSERT's own and the rank/status checks hold
            # by construction, so the RPS index is the one constraint a caller can break.
            raise RpsAlreadyRecorded(
                f"invoice {row.invoice_id}: RPS {row.cnpj}/{row.rps_serie}/{row.rps_tipo}/"
                f"{row.rps_numero} is already recorded for another invoice ({error})"
            ) from error
        return bool(changed)

    def get(self, invoice_id: str) -> LedgerRow | None:
        rows = self._executor.execute(GET_SQL, {"invoice_id": invoice_id})
        return row_from_record(rows[0]) if rows else None

    def list_by_status(self, status: InvoiceStatus, *, limit: int = 100) -> list[LedgerRow]:
        """Oldest first; for reconciliation against DynamoDB."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        rows = self._executor.execute(
            LIST_BY_STATUS_SQL, {"status": InvoiceStatus(status).value, "limit": limit}
        )
        return [row_from_record(r) for r in rows]
