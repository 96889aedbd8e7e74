"""ProcessorFn: reprocess the DLQ (schedule or manual invoke) and return a summary.

Event (all optional): {"maxMessages": 50}.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core.config import ProcessorSettings
from nfse_core.logging_redaction import RedactingFormatter
from nfse_core.services.issue import RetryPolicy
from nfse_core.services.reprocess import DlqReprocessor, S3Parking
from nfse_core.services.wiring import build_issuance
from nfse_core.store.aws import AwsClients
from nfse_core.store.invoices import utc_now

logger = Logger(logger_formatter=RedactingFormatter())
tracer = Tracer()
metrics = Metrics(namespace="NfsePlatform")

# A last try is short: the worker already retried; what is left is decided by later runs.
LAST_CHANCE_RETRY = RetryPolicy(attempts=2, budget_seconds=10.0)


@cache
def reprocessor() -> tuple[DlqReprocessor, ProcessorSettings]:
    settings = ProcessorSettings.from_env()
    clients = AwsClients()
    issuance = build_issuance(settings, clients, pool_size=4, retry=LAST_CHANCE_RETRY)
    worker = DlqReprocessor(
        sqs=clients.sqs,
        dlq_url=settings.dlq_url,
        service=issuance.service,
        parking=S3Parking(issuance.documents, utc_now),
        per_message_seconds=issuance.max_lease_seconds,
        hold_seconds=settings.hold_seconds,
    )
    return worker, settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, int]:
    worker, settings = reprocessor()
    requested = (event or {}).get("maxMessages", settings.max_messages)
    limit = max(1, min(int(requested), settings.max_messages))
    summary = worker.run(limit, lambda: context.get_remaining_time_in_millis() / 1000).as_dict()
    for name in ("issued", "failed", "undecided", "parked", "crashed"):
        metrics.add_metric(name=f"Reprocessed_{name}", unit=MetricUnit.Count, value=summary[name])
    return summary
