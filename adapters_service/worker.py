"""The adapter worker process: SQS -> issuance use case, until SIGTERM.

Entry point of the container image and of the local stack (`python -m adapters_service`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextvars import ContextVar
from pathlib import Path
from types import FrameType

from adapters_service.consumer import Consumer, Disposition, Received, Verdict, backoff_seconds
from adapters_service.scratch import EXIT_NOT_WRITABLE, not_writable, writable_dirs
from nfse_core.bootstrap import build_worker_issuance, worker_clients
from nfse_core.config import WorkerSettings
from nfse_core.logging_redaction import RedactingFormatter
from nfse_core.services.issue import IssueService, Outcome, invoice_id_of
from nfse_core.store.aws import AwsClients

log = logging.getLogger("adapters_service")
_current_invoice: ContextVar[str | None] = ContextVar("invoice_id", default=None)


class _InvoiceContext(logging.Filter):
    """Puts the invoice being handled by this thread on every log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        invoice_id = _current_invoice.get()
        if invoice_id is not None:
            record.invoice_id = invoice_id
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedactingFormatter(utc=True))
    handler.addFilter(_InvoiceContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class MessageHandler:
    """One SQS message -> one invoice driven as far as it goes; what to do with the message."""

    def __init__(self, service: IssueService, backoff_base: float = 5.0) -> None:
        self._service = service
        self._backoff_base = backoff_base

    def _later(self, message: Received) -> Verdict:
        delay = backoff_seconds(message.receive_count, base=self._backoff_base)
        return Verdict(Disposition.RETRY, delay)

    def __call__(self, message: Received) -> Verdict:
        invoice_id = invoice_id_of(message.body)
        if invoice_id is None:
            # Not ours to judge: after maxReceiveCount SQS moves it to the DLQ for people.
            log.error("message without an invoiceId", extra={"message_id": message.message_id})
            return self._later(message)
        token = _current_invoice.set(invoice_id)
        try:
            result = self._service.process(invoice_id, redelivered=message.receive_count > 1)
        finally:
            _current_invoice.reset(token)
        if result.outcome in {Outcome.ISSUED, Outcome.FAILED, Outcome.ALREADY_FINAL}:
            return Verdict(Disposition.DELETE)
        return self._later(message)


def build_consumer(settings: WorkerSettings, clients: AwsClients | None = None) -> Consumer:
    aws = clients or worker_clients(settings.concurrency, settings.wait_seconds)
    issuance = build_worker_issuance(settings, aws)
    return Consumer(
        sqs=aws.sqs,
        queue_url=settings.requests_queue_url,
        handler=MessageHandler(issuance.service, settings.backoff_base_seconds),
        concurrency=settings.concurrency,
        wait_seconds=settings.wait_seconds,
        visibility_timeout=settings.visibility_timeout,
        heartbeat_file=Path(settings.heartbeat_file) if settings.heartbeat_file else None,
    )


def main() -> int:
    configure_logging()
    settings = WorkerSettings.from_env()
    problems = not_writable(writable_dirs(settings.heartbeat_file, os.environ))
    if problems:
        log.critical(
            "worker cannot start: %s; run it with these directories writable by uid %d (the"
            " task mounts the image's VOLUME /scratch: adapters_service/Dockerfile)",
            "; ".join(problems),
            os.getuid(),
        )
        return EXIT_NOT_WRITABLE
    consumer = build_consumer(settings)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received: finishing in-flight work", extra={"signal": signum})
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.run()
    return 0
