"""The sweeper (SweeperFn, on a schedule): no invoice stays stuck, and the ledger misses none.

An invoice is in the sweeper's sparse index (InvoicesTable PendingIndex) from its creation
until it is final and its ledger row written. Each run looks at those created more than
`redrive_after` ago:
- final (FAILED by EmitFn or by the state machine's Catch, which have no ledger access; or a
  worker that stopped between its final write and the ledger): the ledger row is written and
  the invoice leaves the index;
- EMITTED or PROCESSING with live work (a running lease, or an attempt or a re-drive within
  `live_window`: a message waiting out its backoff, in the DLQ for ProcessorFn): left alone;
- EMITTED without its XML (EmitFn died between the item and the document, or a keyed client
  never retried): nothing was ever queued, so FAILED (EMIT_INCOMPLETE);
- otherwise nothing is working on it (the Lambda died before StartExecution, the execution's
  Catch could not write, the DLQ message expired after 14 days): a new message goes to the
  requests queue. The worker is idempotent: a duplicate costs one read.
Non-final invoices older than `stuck_after` are counted (the StuckInvoices metric and alarm):
they need a person, whatever the sweeper did.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.status import FINAL, InvoiceStatus
from nfse_core.services.emit import queue_message
from nfse_core.services.ports import DocumentPresence, LedgerWriter, PendingInvoices, Queue
from nfse_core.store.invoices import PENDING_SHARDS, FailGuard
from nfse_core.store.ledger import LedgerRow

log = logging.getLogger(__name__)


class SqsQueue:
    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self._url = url

    def send(self, body: dict[str, Any]) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(body))


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    redrive_after: timedelta = timedelta(minutes=15)
    # Longer than the worker's longest backoff (900 s) plus ProcessorFn's schedule (15 min).
    live_window: timedelta = timedelta(minutes=35)
    stuck_after: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SweepSummary:
    examined: int
    recorded: int
    redriven: int
    failed_incomplete: int
    live: int
    stuck: int
    stopped_early: bool

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "examined": self.examined,
            "recorded": self.recorded,
            "redriven": self.redriven,
            "failedIncomplete": self.failed_incomplete,
            "live": self.live,
            "stuck": self.stuck,
            "stoppedEarly": self.stopped_early,
        }


class Sweeper:
    def __init__(  # noqa: PLR0913 - keyword-only: the ports the sweeper is wired with
        self,
        *,
        invoices: PendingInvoices,
        documents: DocumentPresence,
        queue: Queue,
        ledger: LedgerWriter,
        clock: Callable[[], datetime],
        policy: SweepPolicy | None = None,
    ) -> None:
        self._invoices = invoices
        self._documents = documents
        self._queue = queue
        self._ledger = ledger
        self._clock = clock
        self._policy = policy or SweepPolicy()

    def run(self, remaining_seconds: Callable[[], float] = lambda: float("inf")) -> SweepSummary:
        counts: Counter[str] = Counter()
        now = self._clock()
        cutoff = now - self._policy.redrive_after
        stopped_early = False
        for shard in range(PENDING_SHARDS):
            for invoice_id in self._invoices.pending_before(shard, cutoff):
                if remaining_seconds() < 10:
                    stopped_early = True  # the next run goes on where this one stopped
                    break
                counts["examined"] += 1
                try:
                    self._sweep(invoice_id, now, counts)
                except Exception:  # one invoice must not stop the sweep
                    log.exception("sweeping an invoice failed", extra={"invoice_id": invoice_id})
                    counts["errors"] += 1
            if stopped_early:
                break
        summary = SweepSummary(
            examined=counts["examined"],
            recorded=counts["recorded"],
            redriven=counts["redriven"],
            failed_incomplete=counts["failed_incomplete"],
            live=counts["live"],
            stuck=counts["stuck"],
            stopped_early=stopped_early,
        )
        log.info("sweep done", extra=summary.as_dict())
        return summary

    def _sweep(self, invoice_id: str, now: datetime, counts: Counter[str]) -> None:
        record = self._invoices.get(invoice_id)
        if record is None:
            return
        if record.status in FINAL:
            self._record(record, counts)
            return
        if now - record.created_at > self._policy.stuck_after:
            counts["stuck"] += 1
            log.error(
                "invoice stuck",
                extra={"invoice_id": invoice_id, "status": record.status.value},
            )
        if self._live(record, now):
            counts["live"] += 1
            return
        if record.status is InvoiceStatus.EMITTED and not self._documents.exists(record.xml_key):
            # Never queued (no XML, no execution): nothing can have been sent.
            error = FailureReason("EMIT_INCOMPLETE", "recorded, but its XML was never stored")
            if self._invoices.mark_failed(
                invoice_id,
                processed_at=now,
                error=error,
                guard=FailGuard.never_sent(),
                ledger_follows=False,
            ):
                counts["failed_incomplete"] += 1
                final = self._invoices.get(invoice_id)
                if final is not None:
                    self._record(final, counts)
            return
        if self._invoices.note_redrive(invoice_id, now=now):
            self._queue.send(queue_message(record))
            counts["redriven"] += 1
            log.warning(
                "invoice re-driven",
                extra={"invoice_id": invoice_id, "status": record.status.value},
            )

    def _live(self, record: InvoiceRecord, now: datetime) -> bool:
        if record.lease_until is not None and record.lease_until > now:
            return True
        activity = record.last_attempt_at
        return activity is not None and now - activity < self._policy.live_window

    def _record(self, record: InvoiceRecord, counts: Counter[str]) -> None:
        self._ledger.upsert(LedgerRow.of(record))
        self._invoices.clear_pending(record.invoice_id)
        counts["recorded"] += 1
