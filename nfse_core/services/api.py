"""What EmitFn runs: a request parsed, then emitted once per idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfse_core.config import ApiSettings
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.services.emit import EmitService
from nfse_core.services.idempotent import IdempotentEmitter, body_fingerprint
from nfse_core.store.invoices import InvoiceRepository


@dataclass(frozen=True, slots=True)
class EmitApi:
    settings: ApiSettings
    invoices: InvoiceRepository
    emitter: EmitService
    idempotency: IdempotentEmitter

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
