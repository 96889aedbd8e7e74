"""DLQ reprocessing (ProcessorFn): one last, careful try for what the worker gave up on.

Each message is handled on its own: one that raises is logged and left for the next run, the
others go on. A run stops taking messages while it still has the time for the slowest one
(`per_message_seconds`), and hands back what it received but did not start.
- ISSUED or FAILED (now or earlier): the invoice is final, the message is deleted.
- Undecided (the provider cannot be reached, or its answer proves nothing yet): the message
  stays, invisible until about the next run (`hold_seconds`).
- A message that names no invoice we know is parked (S3 `parked/`, with the reason) and
  deleted: no later run could do anything with it, and it would keep the DLQ alarm on.
The first run that takes an invoice makes its last sends; later runs only consult (issue.py).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nfse_core.services.issue import IssueService, Outcome, invoice_id_of

log = logging.getLogger(__name__)

# What a run keeps in reserve after the last message it may start (settling, the summary).
STOP_MARGIN_SECONDS = 10.0


class Parking(Protocol):
    def park(self, message_id: str, body: str, reason: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ReprocessSummary:
    received: int
    issued: int
    failed: int
    already_final: int
    undecided: int
    parked: int
    crashed: int
    handed_back: int
    deleted: int

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "issued": self.issued,
            "failed": self.failed,
            "alreadyFinal": self.already_final,
            "undecided": self.undecided,
            "parked": self.parked,
            "crashed": self.crashed,
            "handedBack": self.handed_back,
            "deleted": self.deleted,
        }


class S3Parking:
    """Poison messages as JSON objects under `parked/` in the documents bucket."""

    def __init__(self, documents: Any, clock: Callable[[], datetime]) -> None:
        self._documents = documents
        self._clock = clock

    def park(self, message_id: str, body: str, reason: str) -> str:
        key = f"parked/{message_id}.json"
        record = {
            "messageId": message_id,
            "reason": reason,
            "parkedAt": self._clock().isoformat(),
            "body": body,
        }
        self._documents.put(key, json.dumps(record).encode(), "application/json")
        return key


class DlqReprocessor:
    def __init__(
        self,
        *,
        sqs: Any,
        dlq_url: str,
        service: IssueService,
        parking: Parking,
        per_message_seconds: float,
        hold_seconds: int = 900,
    ) -> None:
        self._sqs = sqs
        self._dlq_url = dlq_url
        self._service = service
        self._parking = parking
        self._per_message_seconds = per_message_seconds
        self._hold_seconds = hold_seconds

    def run(self, max_messages: int, remaining_seconds: Callable[[], float]) -> ReprocessSummary:
        counts: Counter[str] = Counter()
        seen: set[str] = set()
        while counts["received"] < max_messages and self._may_start(remaining_seconds):
            wanted = min(10, max_messages - counts["received"])
            answer = self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=0,
                # Long enough for the batch: a message not started is handed back explicitly.
                VisibilityTimeout=int(wanted * self._per_message_seconds + STOP_MARGIN_SECONDS),
            )
            messages = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                counts["received"] += 1
                if not self._may_start(remaining_seconds):
                    self._set_visibility(message, 0)
                    counts["handed_back"] += 1
                    continue
                self._one(message, counts)
        summary = ReprocessSummary(
            received=counts["received"],
            issued=counts["issued"],
            failed=counts["failed"],
            already_final=counts["already_final"],
            undecided=counts["undecided"],
            parked=counts["parked"],
            crashed=counts["crashed"],
            handed_back=counts["handed_back"],
            deleted=counts["deleted"],
        )
        log.info("dlq reprocessed", extra=summary.as_dict())
        return summary

    def _may_start(self, remaining_seconds: Callable[[], float]) -> bool:
        return remaining_seconds() > self._per_message_seconds + STOP_MARGIN_SECONDS

    def _one(self, message: dict[str, Any], counts: Counter[str]) -> None:
        try:
            verdict = self._reprocess(message, counts)
        except Exception:
            # One bad message must not stop the run, nor hide the others: it is left for the
            # next run (and stays visible to the DLQ alarm).
            log.exception("reprocessing crashed", extra={"message_id": message["MessageId"]})
            counts["crashed"] += 1
            self._set_visibility(message, self._hold_seconds)
            return
        if verdict == "delete":
            self._sqs.delete_message(QueueUrl=self._dlq_url, ReceiptHandle=message["ReceiptHandle"])
            counts["deleted"] += 1
        else:
            self._set_visibility(message, self._hold_seconds)

    def _reprocess(self, message: dict[str, Any], counts: Counter[str]) -> str:
        """ "delete" when nothing is left to do for the message, "keep" otherwise."""
        invoice_id = invoice_id_of(message["Body"])
        if invoice_id is None:
            self._park(message, "the message names no invoiceId", counts)
            return "delete"
        result = self._service.process(invoice_id, redelivered=True, last_chance=True)
        match result.outcome:
            case Outcome.ISSUED:
                counts["issued"] += 1
                return "delete"
            case Outcome.FAILED:
                counts["failed"] += 1
                return "delete"
            case Outcome.DONE:
                counts["already_final"] += 1
                return "delete"
            case Outcome.DROPPED:
                self._park(message, f"unknown invoice {invoice_id}", counts)
                return "delete"
            case _:
                counts["undecided"] += 1
                return "keep"

    def _park(self, message: dict[str, Any], reason: str, counts: Counter[str]) -> None:
        key = self._parking.park(message["MessageId"], message["Body"], reason)
        log.error(
            "poison message parked",
            extra={"message_id": message["MessageId"], "reason": reason, "key": key},
        )
        counts["parked"] += 1

    def _set_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._dlq_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=seconds,
            )
        except Exception:  # the receive's own visibility timeout still applies
            log.warning("could not change a DLQ message's visibility", exc_info=True)
