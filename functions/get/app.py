"""GetFn: GET /invoices/{invoiceId} -> 200 with its status; 404 for unknown or foreign ids."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core import bootstrap, observability
from nfse_core.config import QuerySettings
from nfse_core.http import install_error_handlers, json_response, tenant_of
from nfse_core.services.queries import InvoiceQueries

logger = observability.logger()
tracer = observability.tracer()
app = APIGatewayRestResolver()
install_error_handlers(app, logger)


@cache
def queries() -> InvoiceQueries:
    return bootstrap.build_queries(QuerySettings.from_env())


@app.get("/invoices/<invoiceId>")
@tracer.capture_method
def get_invoice(invoiceId: str) -> Response[str]:
    logger.append_keys(invoice_id=invoiceId)
    tenant = tenant_of(app.current_event.raw_event)
    return json_response(200, queries().get(tenant, invoiceId))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
