"""In-memory fakes of the services' ports (nfse_core.services.ports), one per port.

Fakes that take part in one test may share a `calls` list: each appends the name of the AWS
call it stands for, so a test can check the order of the writes across ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.status import ALLOWED_FROM, FINAL, InvoiceStatus
from nfse_core.providers.port import Issued, Rejected, RpsKey, RpsNotFound, TemporaryFailure
from nfse_core.store.documents import signed_key
from nfse_core.store.invoices import FailGuard
from nfse_core.store.ledger import LedgerRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class FakeInvoices:
    """InvoicesTable in memory, with the status moves, the send lease and the FAILED guard
    evaluated as the table's conditions do (tests/integration/test_invoice_leases.py checks
    the real ones on DynamoDB/moto)."""

    items: dict[str, InvoiceRecord] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # owners whose lease was handed back
    failures: list[tuple[FailGuard, bool]] = field(default_factory=list)  # guard, ledger_follows
    worker_holds: bool = False  # a worker takes each new invoice under its lease at once
    unavailable: bool = False  # mark_failed raises, as an unreachable table would

    @classmethod
    def holding(cls, record: InvoiceRecord) -> FakeInvoices:
        return cls({record.invoice_id: record})

    @property
    def record(self) -> InvoiceRecord:
        """The one invoice of a table that holds one."""
        (only,) = self.items.values()
        return only

    @record.setter
    def record(self, record: InvoiceRecord) -> None:
        self.items = {record.invoice_id: record}

    def get(self, invoice_id: str, *, consistent: bool = True) -> InvoiceRecord | None:
        return self.items.get(invoice_id)

    def put_emitted(self, record: InvoiceRecord) -> bool:
        self.calls.append("put_item")
        if record.invoice_id in self.items:
            return False
        self.items[record.invoice_id] = record
        return True

    def another_holder_sends_until(self, until: datetime) -> None:
        self.record = replace(
            self.record,
            status=InvoiceStatus.PROCESSING,
            lease_until=until,
            lease_owner="another",
            signed_key=signed_key(self.record.invoice_id),
        )

    def mark_processing(
        self,
        invoice_id: str,
        *,
        now: datetime,
        lease_until: datetime,
        owner: str,
        last_chance: bool = False,
    ) -> InvoiceRecord | None:
        assert lease_until > now and owner
        current = self.items[invoice_id]
        if current.status in FINAL or (
            current.lease_until is not None and current.lease_until >= now
        ):
            return None
        self.items[invoice_id] = replace(
            current,
            status=InvoiceStatus.PROCESSING,
            prev_lease_until=current.lease_until or EPOCH,
            lease_until=lease_until,
            lease_owner=owner,
            last_attempt_at=now,
            last_chance_runs=current.last_chance_runs + (1 if last_chance else 0),
        )
        return self.items[invoice_id]

    def release_lease(self, invoice_id: str, owner: str, *, now: datetime) -> None:
        self.released.append(owner)
        current = self.items[invoice_id]
        if current.lease_owner == owner:
            self.items[invoice_id] = replace(
                current, lease_until=now, lease_owner=f"released:{owner}"
            )

    def set_signed_key(self, invoice_id: str, key: str) -> None:
        self.items[invoice_id] = replace(self.items[invoice_id], signed_key=key)

    def mark_issued(self, invoice_id: str, **kw: object) -> bool:
        return self._move(
            invoice_id,
            InvoiceStatus.ISSUED,
            processed_at=kw["processed_at"],
            nfse_number=kw["nfse_number"],
            nfse_key=kw["nfse_key"],
            access_key=kw.get("access_key"),
        )

    def mark_failed(
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        error: FailureReason,
        guard: FailGuard,
        ledger_follows: bool = True,
    ) -> bool:
        self.calls.append("mark_failed")
        self.failures.append((guard, ledger_follows))
        if self.unavailable:
            raise ConnectionError("dynamodb down")
        r = self.items[invoice_id]
        if self.worker_holds and r.status is InvoiceStatus.EMITTED:
            r = self.items[invoice_id] = replace(
                r,
                status=InvoiceStatus.PROCESSING,
                lease_until=processed_at + timedelta(minutes=1),
                lease_owner="worker",
            )
        if guard.settled_before is None:
            lease_free = (
                r.lease_until is None
                or r.lease_until < processed_at
                or (guard.owner is not None and r.lease_owner == guard.owner)
            )
            allowed = r.signed_key is None and lease_free
        else:
            allowed = (
                r.lease_owner == guard.owner
                and r.prev_lease_until is not None
                and r.prev_lease_until < guard.settled_before
            )
        return allowed and self._move(
            invoice_id, InvoiceStatus.FAILED, processed_at=processed_at, error=error
        )

    def _move(self, invoice_id: str, target: InvoiceStatus, **changes: Any) -> bool:
        current = self.items[invoice_id]
        if current.status not in ALLOWED_FROM[target]:
            return False
        self.items[invoice_id] = replace(current, status=target, **changes)
        return True


@dataclass
class FakeCounter:
    calls: list[str] = field(default_factory=list)
    last: int = 0

    def next(self, cnpj: str, serie: str) -> int:
        self.calls.append("counter")
        self.last += 1
        return self.last


@dataclass
class FakeTenants:
    companies: dict[str, frozenset[str]] = field(default_factory=dict)

    def cnpjs_of(self, tenant_id: str) -> frozenset[str]:
        return self.companies.get(tenant_id, frozenset())


@dataclass
class FakeDocuments:
    objects: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: bool = False  # every write raises, as an unreachable bucket would

    def put_xml(self, key: str, body: bytes) -> None:
        self.calls.append("put_object")
        if self.down:
            raise ConnectionError("s3 down")
        self.objects[key] = body

    def read(self, key: str) -> bytes:
        return self.objects[key]  # a missing key fails, as a 403 would without ListBucket

    def exists(self, key: str) -> bool:
        return key in self.objects


@dataclass
class FakeOrchestrator:
    calls: list[str] = field(default_factory=list)
    executions: list[str] = field(default_factory=list)  # names of the started executions
    down: bool = False  # every start raises, as an unreachable Step Functions would

    def start(self, invoice_id: str, payload: dict[str, Any], *, name: str) -> str:
        self.calls.append("start_execution")
        if self.down:
            raise ConnectionError("states down")
        assert payload["invoiceId"] == invoice_id and name.startswith(invoice_id)
        assert name not in self.executions  # names are unique per state machine
        self.executions.append(name)
        return "arn:execution"


@dataclass
class FakeLedger:
    rows: list[LedgerRow] = field(default_factory=list)

    def upsert(self, row: LedgerRow) -> bool:
        self.rows.append(row)
        return True


@dataclass
class ScriptedProvider:
    """Answers from scripts, in order; records every call."""

    sends: list[Issued | Rejected | TemporaryFailure] = field(default_factory=list)
    max_call_seconds: float = 1.0
    settle_seconds: float = 60.0
    consults: list[Issued | RpsNotFound | TemporaryFailure] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def issue(self, signed_xml: bytes) -> Issued | Rejected | TemporaryFailure:
        self.calls.append("send")
        assert signed_xml.startswith(b"signed:")
        return self.sends.pop(0)

    def consult(self, rps: RpsKey) -> Issued | RpsNotFound | TemporaryFailure:
        self.calls.append("consult")
        return self.consults.pop(0)
