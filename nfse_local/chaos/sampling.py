"""Status histories during the run: every invoice's distinct statuses as DynamoDB and the
ledger showed them, sampled over and over, and the moves that went backwards."""

from __future__ import annotations

import itertools
import threading
import time

from nfse_core.domain.status import FINAL, RANK, InvoiceStatus
from nfse_core.store.sql_executors import SqlAlchemyExecutor
from nfse_local.chaos.probes import SELECT_LEDGER, scan
from nfse_local.stack import LocalStack


class StatusSampler(threading.Thread):
    """Samples every invoice's status in DynamoDB (consistent scans) and in the ledger, over
    and over, keeping each observed sequence of distinct statuses."""

    def __init__(self, stack: LocalStack, interval: float) -> None:
        super().__init__(name="chaos-sampler", daemon=True)

        self._ddb = stack.client("dynamodb")
        self._table = stack.resources.invoices_table
        self._executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
        self._interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.dynamodb: dict[str, list[str]] = {}
        self.ledger: dict[str, list[str]] = {}
        self.final_count = 0
        self.scans = 0
        self.ledger_reads = 0
        self.errors = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)
        self._executor.engine.dispose()

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            self.sample_once()
            # A scan costs more as the table grows: it keeps to a quarter of the time at most.
            self._halt.wait(max(self._interval, 3 * (time.monotonic() - began)))

    def sample_once(self) -> None:
        try:
            items = scan(self._ddb, self._table, statuses_only=True)
            rows = self._executor.execute(SELECT_LEDGER, {})
        except Exception:
            self.errors += 1
            return
        with self._lock:
            finals = 0
            for item in items:
                status = item["status"]["S"]
                finals += InvoiceStatus(status) in FINAL
                observe(self.dynamodb, item["invoiceId"]["S"], status)
            for row in rows:
                observe(self.ledger, str(row["invoice_id"]), str(row["status"]))
            self.final_count = finals
            self.scans += 1
            self.ledger_reads += 1

    def pending(self, ids: set[str]) -> list[str]:
        """Those of `ids` not settled yet: their latest sampled DynamoDB status is not final,
        or the ledger does not show it yet (a worker killed between its final write and the
        ledger leaves the row to SweeperFn, which the run waits for, as production would)."""
        with self._lock:
            return [
                i
                for i in ids
                if not is_final(self.dynamodb.get(i))
                or (self.ledger.get(i) or [""])[-1] != self.dynamodb[i][-1]
            ]


def is_final(seen: list[str] | None) -> bool:
    """Whether the latest status of a history is final."""
    return bool(seen) and InvoiceStatus(seen[-1] if seen else "EMITTED") in FINAL


def observe(history: dict[str, list[str]], invoice_id: str, status: str) -> None:
    """Add `status` to the invoice's history unless it is its latest already."""
    seen = history.setdefault(invoice_id, [])
    if not seen or seen[-1] != status:
        seen.append(status)


def backward_moves(history: dict[str, list[str]]) -> list[str]:
    """Every observed sequence that is not monotonic by RANK, or leaves a final status."""
    problems = []
    for invoice_id, seen in history.items():
        statuses = [InvoiceStatus(s) for s in seen]
        for before, after in itertools.pairwise(statuses):
            # Same rank but different status (ISSUED <-> FAILED) is a move too: never allowed.
            leaves_final = before in FINAL and after is not InvoiceStatus.CANCELLED
            if RANK[after] < RANK[before] or leaves_final:
                problems.append(f"{invoice_id}: {' -> '.join(seen)}")
                break
    return problems
