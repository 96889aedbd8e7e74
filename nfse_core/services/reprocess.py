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

Sizing: a run never takes more messages than the time it has left can fit at the worst case of
one message (`dlq_message_seconds`: the slowest provider's calls and settle time, read from the
registry in use); `run_capacity` is that arithmetic, and ProcessorFn's Timeout is checked
against it for the slowest provider the registry accepts (tests/unit/test_reprocess_sizing.py).
Runs may overlap (no reserved concurrency): SQS hides a received message from the other run,
and the invoice's send lease keeps two holders from sending at once.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nfse_core.services.issue import (
    DeliveryRetry,
    IssueService,
    Outcome,
    invoice_id_of,
    lease_seconds,
)
from nfse_core.services.ports import Parking

log = logging.getLogger(__name__)

# What a run keeps in reserve after the last message it may start (settling, the summary).
STOP_MARGIN_SECONDS = 10.0
# A last try is short: the worker already retried; what is left is decided by later runs.
LAST_CHANCE_RETRY = DeliveryRetry(attempts=2, budget_seconds=10.0)
# SQS returns at most this many messages per receive.
RECEIVE_BATCH_MAX = 10
NO_MESSAGE_FITS_LOG = "dlq run cannot fit one message"


def dlq_message_seconds(
    retry: DeliveryRetry, max_call_seconds: float, settle_seconds: float
) -> float:
    """The longest one DLQ message can take (IssueService.process with last_chance): the send
    lease (no try starts after the retry budget, each try's consult and send end by their
    deadline, plus the lease margin), the wait for the last send to settle, and the final
    consult."""
    return lease_seconds(retry, max_call_seconds) + settle_seconds + max_call_seconds


def run_capacity(seconds_left: float, per_message_seconds: float) -> int:
    """How many more messages a run may take: the largest N with
    N x per_message_seconds + STOP_MARGIN_SECONDS <= seconds_left (never negative)."""
    if per_message_seconds <= 0:
        raise ValueError("per_message_seconds must be positive")
    return max(0, math.floor((seconds_left - STOP_MARGIN_SECONDS) / per_message_seconds))


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
    def __init__(  # noqa: PLR0913 - keyword-only: the queue, the service and the run's limits
        self,
        *,
        sqs: Any,
        dlq_url: str,
        service: IssueService,
        parking: Parking,
        per_message_seconds: float | Callable[[], float],
        hold_seconds: int = 900,
    ) -> None:
        """`per_message_seconds`: the worst case of one message (dlq_message_seconds), or a
        function that tells it for the registry in use at the start of each run."""
        self._sqs = sqs
        self._dlq_url = dlq_url
        self._service = service
        self._parking = parking
        self._per_message: Callable[[], float] = (
            per_message_seconds
            if callable(per_message_seconds)
            else (lambda: float(per_message_seconds))
        )
        self._hold_seconds = hold_seconds

    def run(self, max_messages: int, remaining_seconds: Callable[[], float]) -> ReprocessSummary:
        counts: Counter[str] = Counter()
        seen: set[str] = set()
        per_message = self._per_message()
        if run_capacity(remaining_seconds(), per_message) == 0:
            # Nothing can be taken: the function's timeout (or what is left of it) is shorter
            # than one message of the slowest provider. A person must look.
            log.error(
                NO_MESSAGE_FITS_LOG,
                extra={"seconds_left": remaining_seconds(), "per_message_seconds": per_message},
            )
        while counts["received"] < max_messages:
            # Never more than the time left can finish at the worst case: a message received
            # and not started waits out its visibility timeout.
            fits = run_capacity(remaining_seconds(), per_message)
            wanted = min(RECEIVE_BATCH_MAX, max_messages - counts["received"], fits)
            if wanted <= 0:
                break
            answer = self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=0,
                # Long enough for the batch: a message not started is handed back explicitly.
                VisibilityTimeout=math.ceil(wanted * per_message + STOP_MARGIN_SECONDS),
            )
            messages = []
            for message in answer.get("Messages", []):
                if message["MessageId"] in seen:
                    # Settled by this run and visible again (a hold shorter than the run): the
                    # receive hid it for a whole batch; give it back the hold it was left with.
                    self._set_visibility(message, self._hold_seconds)
                else:
                    messages.append(message)
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                counts["received"] += 1
                if run_capacity(remaining_seconds(), per_message) == 0:
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
            case Outcome.ALREADY_FINAL:
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
