"""SQS consumer loop of the adapter worker: long polling, a bounded pool, graceful shutdown.

It knows queues, not invoices: each message goes to a handler that returns what to do with it
(delete it, or make it visible again after a delay). The handler is the issuance use case.

While a handler runs, a heartbeat keeps its message invisible: each message in flight for
more than a third of the visibility timeout gets it again (ChangeMessageVisibility), up to
MAX_HANDLING_SECONDS. A slow provider therefore never lets a second worker receive a message
the first is still working on (that second delivery would only find the send lease taken, and
count one receive more towards the DLQ).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_VISIBILITY_SECONDS = 43_200  # SQS's ceiling
# No handler legitimately runs longer: the send lease of the slowest provider the registry
# allows (retry budget + two calls of connect 60 s + read 300 s) is under 13 minutes. Past
# this the heartbeat stops, so a stuck thread cannot hide its message for ever.
MAX_HANDLING_SECONDS = 900.0


class Disposition(StrEnum):
    DELETE = "delete"  # done: ISSUED, FAILED, or nothing left to do
    RETRY = "retry"  # temporary: visible again after a backoff; SQS redrives to the DLQ at N


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    # When the receive returned (monotonic): the visibility timeout runs from about then.
    received_at: float = field(default_factory=time.monotonic)


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
    def __init__(  # noqa: PLR0913 - keyword-only: the queue, its handler and the polling settings
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
        self._heartbeat_failing = False
        self._slots = threading.BoundedSemaphore(concurrency)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="issue")
        self._count_lock = threading.Lock()
        self.processed = 0
        # receipt handle -> (monotonic start, monotonic end of its current visibility)
        self._in_flight: dict[str, tuple[float, float]] = {}
        self._in_flight_lock = threading.Lock()
        self.extensions = 0

    def stop(self) -> None:
        """Take no new messages; in-flight ones finish (SIGTERM)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        log.info("consumer started", extra={"queue": self._queue_url, "slots": self._concurrency})
        heartbeat = threading.Thread(target=self._keep_invisible, name="visibility", daemon=True)
        heartbeat.start()
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
            self._stopped.set()
            heartbeat.join(timeout=5)
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
        """Touch the heartbeat file. A failed write never stops the loop: the health check
        then sees a stale file and ECS replaces the task, while in-flight work finishes."""
        if self._heartbeat_file is None:
            return
        try:
            self._heartbeat_file.touch()
        except OSError as error:
            if not self._heartbeat_failing:
                log.error(
                    "heartbeat not written: the health check will fail",
                    extra={"path": str(self._heartbeat_file), "error": str(error)},
                )
            self._heartbeat_failing = True
        else:
            if self._heartbeat_failing:
                log.info("heartbeat written again", extra={"path": str(self._heartbeat_file)})
            self._heartbeat_failing = False

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

    def _keep_invisible(self) -> None:
        """The heartbeat: extend the visibility of messages whose handler is still running."""
        period = max(1.0, self._visibility_timeout / 3)
        while not self._stopped.wait(min(period, 5.0)):
            now = time.monotonic()
            with self._in_flight_lock:
                due = [
                    (handle, started)
                    for handle, (started, visible_until) in self._in_flight.items()
                    if visible_until - now < 2 * period
                ]
            for handle, started in due:
                if now - started > MAX_HANDLING_SECONDS:
                    log.error(
                        "handler running too long; its message is let go",
                        extra={"seconds": round(now - started)},
                    )
                    with self._in_flight_lock:
                        self._in_flight.pop(handle, None)
                    continue
                try:
                    self._sqs.change_message_visibility(
                        QueueUrl=self._queue_url,
                        ReceiptHandle=handle,
                        VisibilityTimeout=self._visibility_timeout,
                    )
                except Exception:
                    # Deleted meanwhile, or SQS unreachable: the next beat tries again.
                    log.warning("could not extend a message's visibility", exc_info=True)
                    continue
                with self._in_flight_lock:
                    if handle in self._in_flight:
                        self._in_flight[handle] = (started, now + self._visibility_timeout)
                        self.extensions += 1

    def _handle(self, message: Received) -> None:
        received_at = message.received_at
        with self._in_flight_lock:
            self._in_flight[message.receipt_handle] = (
                received_at,
                received_at + self._visibility_timeout,
            )
        try:
            verdict = self._handler(message)
        except Exception:
            # Unknown failure: leave the message to reappear after its visibility timeout.
            log.exception("handler crashed", extra={"message_id": message.message_id})
            return
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(message.receipt_handle, None)
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
