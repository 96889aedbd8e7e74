"""EmitFn: POST /invoices -> 201 {invoiceId, status, xmlKey} (thin: the work is in nfse_core)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core import bootstrap, observability
from nfse_core.config import ApiSettings
from nfse_core.http import header, install_error_handlers, json_response, read_json_body, tenant_of
from nfse_core.services.api import EmitApi

logger = observability.logger()
tracer = observability.tracer()
metrics = observability.metrics()
bootstrap.preload(bootstrap.EMIT_MODULES)
app = APIGatewayRestResolver()
install_error_handlers(app, logger)


@cache
def api() -> EmitApi:
    return bootstrap.build_emit(ApiSettings.from_env())


@app.post("/invoices")
@tracer.capture_method
def emit() -> Response[str]:
    event = app.current_event.raw_event
    tenant = tenant_of(event)
    service = api()
    body = read_json_body(event, max_bytes=service.settings.max_body_bytes)
    result = service.emit(tenant, body, header(event, "Idempotency-Key"))
    logger.append_keys(invoice_id=result["invoiceId"])
    metrics.add_metric(name="InvoicesEmitted", unit=MetricUnit.Count, value=1)
    return json_response(201, result, {"Location": f"/invoices/{result['invoiceId']}"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    api().idempotency.register_lambda_context(context)
    return app.resolve(event, context)
