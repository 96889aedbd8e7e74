"""Emit use case: a valid request becomes an EMITTED invoice, its XML in S3, and an execution."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nfse_core.domain.errors import FieldError, Forbidden, ServiceUnavailable
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.rules import FISCAL_TZ
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.documents import xml_key
from nfse_core.store.invoices import InvoiceError, InvoiceRecord
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_core.xml.validate import validate_rps_document

log = logging.getLogger(__name__)


class Invoices(Protocol):
    def put_emitted(self, record: InvoiceRecord) -> None: ...
    def mark_failed(
        self, invoice_id: str, *, processed_at: datetime, error: InvoiceError
    ) -> bool: ...


class Counter(Protocol):
    def next(self, cnpj: str, serie: str) -> int: ...


class Tenants(Protocol):
    def cnpjs_of(self, tenant_id: str) -> frozenset[str]: ...


class Documents(Protocol):
    def put_xml(self, key: str, body: bytes) -> None: ...


class Orchestrator(Protocol):
    def start(self, invoice_id: str, payload: dict[str, Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class EmitResult:
    invoice_id: str
    status: InvoiceStatus
    xml_key: str

    def as_body(self) -> dict[str, str]:
        return {"invoiceId": self.invoice_id, "status": self.status.value, "xmlKey": self.xml_key}


def queue_message(record: InvoiceRecord) -> dict[str, Any]:
    """The state machine input, which is also the SQS message body (docs/architecture.md)."""
    return {
        "invoiceId": record.invoice_id,
        "tenant": record.tenant,
        "cnpj": record.cnpj,
        "municipio": record.municipio,
        "xmlKey": record.xml_key,
        "rps": {"numero": record.rps.numero, "serie": record.rps.serie, "tipo": record.rps.tipo},
    }


class EmitService:
    def __init__(
        self,
        *,
        invoices: Invoices,
        counter: Counter,
        tenants: Tenants,
        documents: Documents,
        orchestrator: Orchestrator,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        serie: str,
    ) -> None:
        self._invoices = invoices
        self._counter = counter
        self._tenants = tenants
        self._documents = documents
        self._orchestrator = orchestrator
        self._clock = clock
        self._new_id = new_id
        self._serie = serie

    def emit(self, tenant: str, request: InvoiceRequest) -> EmitResult:
        self.authorize(tenant, request.cnpj)
        now = self._clock()
        invoice_id = self._new_id()
        # The number is taken before the XSD check (ARCHITECTURE order); a document that then
        # fails the XSD leaves a gap in the series, never a reuse.
        rps = RpsIdentity(numero=self._counter.next(request.cnpj, self._serie), serie=self._serie)
        document = build_gerar_nfse_envio(
            request, rps, invoice_id, emitted_on=now.astimezone(FISCAL_TZ).date()
        )
        validate_rps_document(document)
        record = InvoiceRecord(
            invoice_id=invoice_id,
            tenant=tenant,
            status=InvoiceStatus.EMITTED,
            created_at=now,
            total=request.total,
            cnpj=request.cnpj,
            municipio=request.municipio,
            rps=rps,
            xml_key=xml_key(invoice_id),
            inscricao_municipal=request.inscricao_municipal,
            reference=request.reference,
        )
        self._invoices.put_emitted(record)
        try:
            self._documents.put_xml(record.xml_key, to_bytes(document))
            self._orchestrator.start(invoice_id, queue_message(record))
        except Exception as exc:
            self._abandon(record, exc)
            raise ServiceUnavailable(
                "The invoice could not be queued; it is recorded as FAILED. Retry the request."
            ) from exc
        return EmitResult(invoice_id, InvoiceStatus.EMITTED, record.xml_key)

    def authorize(self, tenant: str, cnpj: str) -> None:
        if cnpj not in self._tenants.cnpjs_of(tenant):
            raise Forbidden(
                "This tenant may not emit invoices for this CNPJ",
                [FieldError("cnpj", "not a company of the authenticated tenant")],
            )

    def _abandon(self, record: InvoiceRecord, exc: Exception) -> None:
        """A later step failed: mark the item FAILED so it is visible, never silently EMITTED."""
        log.error("emit incomplete for %s: %s", record.invoice_id, type(exc).__name__)
        try:
            self._invoices.mark_failed(
                record.invoice_id,
                processed_at=self._clock(),
                error=InvoiceError("EMIT_INCOMPLETE", f"not queued: {type(exc).__name__}"),
            )
        except Exception:
            # The item stays EMITTED without an execution; the stuck-invoice alarm finds it.
            log.exception("could not mark %s FAILED", record.invoice_id)
