"""SQS consumer loop of the adapter worker: long polling, a bounded pool, graceful shutdown.

It knows queues, not invoices: each message goes to a handler that returns what to do with it
(delete it, or make it visible again after a delay). The handler is the issuance use case.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_VISIBILITY_SECONDS = 43_200  # SQS's ceiling


class Disposition(StrEnum):
    DELETE = "delete"  # done: ISSUED, FAILED, or nothing left to do
    RETRY = "retry"  # temporary: visible again after a backoff; SQS redrives to the DLQ at N


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class Verdict:
    disposition: Disposition
    delay_seconds: int = 0


Handler = Callable[[Received], Verdict]


def backoff_seconds(receive_count: int, *, base: float = 5.0, cap: float = 900.0) -> int:
    """Exponential backoff by ApproximateReceiveCount with jitter (SQS counts whole seconds)."""
    ceiling = min(cap, base * 2 ** max(0, receive_count - 1))
    return max(0, round(random.uniform(ceiling / 2, ceiling)))  # noqa: S311 - jitter, not crypto


class Consumer:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        concurrency: int = 8,
        wait_seconds: int = 20,
        visibility_timeout: int = 120,
        heartbeat_file: Path | None = None,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._concurrency = concurrency
        self._wait_seconds = wait_seconds
        self._visibility_timeout = visibility_timeout
        self._heartbeat_file = heartbeat_file
        self._slots = threading.BoundedSemaphore(concurrency)
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="issue")
        self._count_lock = threading.Lock()
        self.processed = 0

    def stop(self) -> None:
        """Take no new messages; in-flight ones finish (SIGTERM)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        log.info("consumer started", extra={"queue": self._queue_url, "slots": self._concurrency})
        try:
            while not self._stopping.is_set():
                self._beat()
                free = self._acquire_free_slots()
                try:
                    messages = self._receive(min(10, free))
                except Exception:
                    log.exception("receive failed; backing off")
                    messages = []
                    self._stopping.wait(1.0)
                for message in messages:
                    self._pool.submit(self._handle, message).add_done_callback(self._release)
                for _ in range(free - len(messages)):
                    self._slots.release()
        finally:
            self._pool.shutdown(wait=True)
            log.info("consumer stopped", extra={"processed": self.processed})

    def _acquire_free_slots(self) -> int:
        self._slots.acquire()
        free = 1
        while free < 10 and self._slots.acquire(blocking=False):
            free += 1
        return free

    def _release(self, _: Future[None]) -> None:
        self._slots.release()

    def _beat(self) -> None:
        if self._heartbeat_file is not None:
            self._heartbeat_file.touch()

    def _receive(self, count: int) -> list[Received]:
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self._wait_seconds,
            VisibilityTimeout=self._visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Received(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in answer.get("Messages", [])
        ]

    def _handle(self, message: Received) -> None:
        try:
            verdict = self._handler(message)
        except Exception:
            # Unknown failure: leave the message to reappear after its visibility timeout.
            log.exception("handler crashed", extra={"message_id": message.message_id})
            return
        try:
            if verdict.disposition is Disposition.DELETE:
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message.receipt_handle
                )
            else:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message.receipt_handle,
                    VisibilityTimeout=min(MAX_VISIBILITY_SECONDS, verdict.delay_seconds),
                )
        except Exception:
            log.exception("could not settle message", extra={"message_id": message.message_id})
        with self._count_lock:
            self.processed += 1
