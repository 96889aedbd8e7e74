"""ProcessorFn: reprocess the DLQ (schedule or manual invoke) and return a summary.

Event (all optional): {"maxMessages": 50}. A run takes no more messages than its remaining time
(the Lambda context's) fits at the worst case of one message for the providers in use
(nfse_core.services.reprocess.run_capacity).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core import bootstrap, observability
from nfse_core.config import ProcessorSettings
from nfse_core.services.reprocess import DlqReprocessor

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics()
bootstrap.preload(bootstrap.ISSUANCE_MODULES)


@cache
def reprocessor() -> tuple[DlqReprocessor, ProcessorSettings]:
    settings = ProcessorSettings.from_env()
    return bootstrap.build_reprocessor(settings), settings


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
