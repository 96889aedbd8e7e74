"""What the API handlers run: built once per process from the settings, collaborators injected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nfse_core.config import ApiSettings
from nfse_core.domain.ids import new_invoice_id
from nfse_core.domain.invoice import utc_now
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.services.emit import EmitService
from nfse_core.services.idempotent import IdempotentEmitter, body_fingerprint
from nfse_core.store.aws import AwsClients
from nfse_core.store.control import RpsCounter, TenantDirectory
from nfse_core.store.documents import DocumentStore
from nfse_core.store.invoices import InvoiceRepository
from nfse_core.store.orchestrator import StepFunctionsOrchestrator


@dataclass(frozen=True, slots=True)
class EmitApi:
    settings: ApiSettings
    invoices: InvoiceRepository
    emitter: EmitService
    idempotency: IdempotentEmitter

    @classmethod
    def build(
        cls,
        settings: ApiSettings,
        clients: AwsClients | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> EmitApi:
        aws = clients or AwsClients()
        invoices = InvoiceRepository(aws.dynamodb, settings.invoices_table)
        service = EmitService(
            invoices=invoices,
            counter=RpsCounter(aws.dynamodb, settings.rps_counters_table),
            tenants=TenantDirectory(aws.dynamodb, settings.tenants_table),
            documents=DocumentStore(aws.s3, settings.docs_bucket, settings.docs_kms_key_id),
            orchestrator=StepFunctionsOrchestrator(aws.stepfunctions, settings.state_machine_arn),
            clock=clock,
            new_id=new_invoice_id,
            serie=settings.rps_serie,
        )
        idempotency = IdempotentEmitter(
            client=aws.dynamodb,
            table=settings.idempotency_table,
            ttl_seconds=settings.idempotency_ttl_seconds,
        )
        return cls(settings, invoices, service, idempotency)

    def emit(
        self, tenant: str, body: dict[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        request = parse_invoice_request(body)
        # Errors (403 included) are never stored by the idempotency layer, so never replayed.
        key = idempotency_key or request.reference
        if not key:
            return self.emitter.emit(tenant, request).as_body()
        # Powertools answers replays and concurrent duplicates while its record lives (24 h);
        # the invoice id derived from the key makes any later retry land on the same invoice.
        request_hash = body_fingerprint(body)
        return self.idempotency.run(
            tenant=tenant,
            key=key,
            body=body,
            action=lambda: self.emitter.emit(
                tenant, request, idempotency_key=key, request_hash=request_hash
            ).as_body(),
        )
