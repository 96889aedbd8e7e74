"""SweeperFn (schedule): re-drive stuck invoices, write missing ledger rows, count stuck ones.

See nfse_core/services/sweep.py. Publishes StuckInvoices, which the StuckInvoicesAlarm watches.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core import bootstrap, observability
from nfse_core.config import SweeperSettings
from nfse_core.services.sweep import Sweeper

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics()
bootstrap.preload(bootstrap.SWEEPER_MODULES)


@cache
def sweeper() -> Sweeper:
    return bootstrap.build_sweeper(SweeperSettings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, int | bool]:
    summary = sweeper().run(lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric(name="StuckInvoices", unit=MetricUnit.Count, value=summary.stuck)
    metrics.add_metric(name="InvoicesRedriven", unit=MetricUnit.Count, value=summary.redriven)
    return summary.as_dict()
