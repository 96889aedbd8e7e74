"""DLQ reprocessing (ProcessorFn): one last, careful try for what the worker gave up on.

Each message is received with a visibility timeout longer than the run, so it is seen once per
run. ISSUED (now or earlier): the message is deleted. FAILED or undecided: it stays in the DLQ
for people to look at; a FAILED invoice is final and later runs leave it alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from nfse_core.domain.status import InvoiceStatus
from nfse_core.services.issue import IssueService, Outcome, invoice_id_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReprocessSummary:
    received: int
    issued: int
    failed: int
    already_final: int
    undecided: int
    dropped: int
    deleted: int

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "issued": self.issued,
            "failed": self.failed,
            "alreadyFinal": self.already_final,
            "undecided": self.undecided,
            "dropped": self.dropped,
            "deleted": self.deleted,
        }


class DlqReprocessor:
    def __init__(
        self,
        *,
        sqs: Any,
        dlq_url: str,
        service: IssueService,
        hold_seconds: int = 900,
    ) -> None:
        self._sqs = sqs
        self._dlq_url = dlq_url
        self._service = service
        self._hold_seconds = hold_seconds

    def run(self, max_messages: int) -> ReprocessSummary:
        counts: Counter[str] = Counter()
        seen: set[str] = set()
        while counts["received"] < max_messages:
            answer = self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=min(10, max_messages - counts["received"]),
                WaitTimeSeconds=0,
                VisibilityTimeout=self._hold_seconds,
            )
            messages = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                counts["received"] += 1
                if self._reprocess(message, counts):
                    self._sqs.delete_message(
                        QueueUrl=self._dlq_url, ReceiptHandle=message["ReceiptHandle"]
                    )
                    counts["deleted"] += 1
        summary = ReprocessSummary(
            received=counts["received"],
            issued=counts["issued"],
            failed=counts["failed"],
            already_final=counts["already_final"],
            undecided=counts["undecided"],
            dropped=counts["dropped"],
            deleted=counts["deleted"],
        )
        log.info("dlq reprocessed", extra=summary.as_dict())
        return summary

    def _reprocess(self, message: dict[str, Any], counts: Counter[str]) -> bool:
        """Returns whether the message may leave the DLQ."""
        invoice_id = invoice_id_of(message["Body"])
        if invoice_id is None:
            counts["dropped"] += 1
            return False
        result = self._service.process(invoice_id, redelivered=True, last_chance=True)
        match result.outcome:
            case Outcome.ISSUED:
                counts["issued"] += 1
                return True
            case Outcome.FAILED:
                counts["failed"] += 1
                return False
            case Outcome.DONE:
                counts["already_final"] += 1
                return result.detail == InvoiceStatus.ISSUED.value
            case Outcome.DROPPED:
                counts["dropped"] += 1
                return False
            case _:
                counts["undecided"] += 1
                return False
