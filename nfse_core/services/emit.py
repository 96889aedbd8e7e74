"""Emit use case: a valid request becomes an EMITTED invoice, its XML in S3, and an execution.

Writes, in order: the RPS number, the invoice item (conditional: never an overwrite), the XML,
the execution. What a failure after the item leaves behind, and who finishes it:
- with an Idempotency-Key (or `reference`): the invoice id is derived from the key, so the
  client's retry lands on this very invoice and completes it (XML again, a new execution); the
  answer is a 503 that says so. If the client never comes back, the sweeper does (sweep.py).
- without a key: the client cannot refer to this invoice again, so it is marked FAILED
  (EMIT_INCOMPLETE) - unless a worker already holds it (the execution did start, its answer was
  lost): then it is on its way and the answer is a 201.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nfse_core.domain import places
from nfse_core.domain.errors import (
    FieldError,
    Forbidden,
    IdempotencyConflict,
    NotSupportedByProvider,
    ServiceUnavailable,
)
from nfse_core.domain.ids import keyed_invoice_id
from nfse_core.domain.invoice import FailureReason, InvoiceRecord, to_document
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.providers.plugin import ProviderDocument, document_of
from nfse_core.services.ports import (
    Counter,
    DocumentWriter,
    NewInvoices,
    Orchestrator,
    Standards,
    Tenants,
)
from nfse_core.store.documents import xml_key
from nfse_core.store.invoices import FailGuard

log = logging.getLogger(__name__)


class InvoiceAlreadyExists(Exception):
    """put_emitted found an item with this id (a concurrent request with the same key)."""


@dataclass(frozen=True, slots=True)
class EmitResult:
    invoice_id: str
    status: InvoiceStatus
    xml_key: str

    def as_body(self) -> dict[str, str]:
        return {"invoiceId": self.invoice_id, "status": self.status.value, "xmlKey": self.xml_key}


# The state machine input, which is also the SQS message body (docs/architecture.md).
QUEUE_ATTRIBUTES = ("invoice_id", "tenant", "cnpj", "municipio", "xml_key", "rps")


def queue_message(record: InvoiceRecord) -> dict[str, Any]:
    """The invoice's document restricted to QUEUE_ATTRIBUTES."""
    return to_document(record, QUEUE_ATTRIBUTES)


class EmitService:
    def __init__(  # noqa: PLR0913 - keyword-only: the ports the service is wired with
        self,
        *,
        invoices: NewInvoices,
        counter: Counter,
        tenants: Tenants,
        standards: Standards,
        documents: DocumentWriter,
        orchestrator: Orchestrator,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        serie: str,
    ) -> None:
        self._invoices = invoices
        self._counter = counter
        self._tenants = tenants
        self._standards = standards
        self._documents = documents
        self._orchestrator = orchestrator
        self._clock = clock
        self._new_id = new_id
        self._serie = serie

    def emit(
        self,
        tenant: str,
        request: InvoiceRequest,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> EmitResult:
        """`idempotency_key` (the header, or the body's reference) makes the invoice id a
        function of (tenant, key); `request_hash` fingerprints the body to tell a retry from a
        different request reusing the key."""
        self.authorize(tenant, request.cnpj)
        if idempotency_key is None:
            invoice_id = self._new_id()
        else:
            invoice_id = keyed_invoice_id(tenant, idempotency_key)
            existing = self._invoices.get(invoice_id)
            if existing is not None:
                return self._resume(existing, tenant, request, request_hash)
        if refused := self._standards.refusal(request.municipio):
            # No provider for the municipality (it adheres to no standard the registry has):
            # a 422 now, before any number, not an invoice the worker could only fail.
            raise refused
        standard = self._document_of(request.municipio)
        if unsupported := standard.unsupported(request):
            raise NotSupportedByProvider(
                f"The provider of municipality {request.municipio} ({standard.standard}) cannot "
                "issue this invoice",
                unsupported,
            )
        now = self._clock()
        # The number is taken before the XSD check (ARCHITECTURE order); a document that then
        # fails the XSD leaves a gap in the series, never a reuse.
        rps = RpsIdentity(numero=self._counter.next(request.cnpj, self._serie), serie=self._serie)
        document = self._document(request, rps, invoice_id, now)
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
            request_hash=request_hash if idempotency_key is not None else None,
            valores=request.valores,
        )
        if not self._invoices.put_emitted(record):
            # A concurrent request with the same key recorded it first; ours is a retry of it.
            existing = self._invoices.get(invoice_id)
            if existing is None:  # pragma: no cover - an item is never deleted
                raise ServiceUnavailable("The invoice could not be recorded. Retry the request.")
            return self._resume(existing, tenant, request, request_hash)
        keyed = idempotency_key is not None
        try:
            self._documents.put_xml(record.xml_key, document)
            self._orchestrator.start(invoice_id, queue_message(record), name=invoice_id)
        except Exception as exc:
            return self._incomplete(record, exc, keyed=keyed)
        return EmitResult(invoice_id, InvoiceStatus.EMITTED, record.xml_key)

    def _document_of(self, municipio: str) -> ProviderDocument:
        """The document of the standard the registry picks for the municipality, for the
        registry's environment."""
        return document_of(
            self._standards.standard_of(municipio),
            self._standards.environment,
            self._standards.form_of(municipio),
        )

    def authorize(self, tenant: str, cnpj: str) -> None:
        if cnpj not in self._tenants.cnpjs_of(tenant):
            raise Forbidden(
                "This tenant may not emit invoices for this CNPJ",
                [FieldError("cnpj", "not a company of the authenticated tenant")],
            )

    def _document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, created_at: datetime
    ) -> bytes:
        """The RPS document of the standard the registry picks for the municipality,
        schema-checked: a function of the request, the RPS, the id and the day of creation, so
        a resumed emit rebuilds the very same document (while the registry keeps the standard)."""
        standard = self._document_of(request.municipio)
        # DataEmissao is the day in the municipality's own time zone, as competencia is.
        emitted_on = created_at.astimezone(places.zone_of(request.municipio)).date()
        return standard.build_document(request, rps, invoice_id, emitted_on)

    def _resume(
        self,
        existing: InvoiceRecord,
        tenant: str,
        request: InvoiceRequest,
        request_hash: str | None,
    ) -> EmitResult:
        """A request whose key already made an invoice: the same request is answered with that
        invoice (and an unfinished emit is finished); a different one is a conflict."""
        if existing.tenant != tenant or existing.request_hash != request_hash:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different body",
                [FieldError("Idempotency-Key", "reused with a different body")],
            )
        if existing.status is InvoiceStatus.EMITTED:
            # The first attempt may have stopped before its XML or its execution: do both again.
            # A second execution for one invoice is harmless (the worker is idempotent); its
            # name must differ, as names of one state machine are unique.
            document = self._document(
                request, existing.rps, existing.invoice_id, existing.created_at
            )
            try:
                self._documents.put_xml(existing.xml_key, document)
                self._orchestrator.start(
                    existing.invoice_id,
                    queue_message(existing),
                    name=f"{existing.invoice_id}-{uuid.uuid4().hex[:12]}",
                )
            except Exception as exc:
                return self._incomplete(existing, exc, keyed=True)
        return EmitResult(existing.invoice_id, existing.status, existing.xml_key)

    def _incomplete(self, record: InvoiceRecord, exc: Exception, *, keyed: bool) -> EmitResult:
        """The invoice is recorded but maybe not its XML or its execution."""
        log.error(
            "emit incomplete",
            extra={"invoice_id": record.invoice_id, "error": type(exc).__name__, "keyed": keyed},
        )
        if keyed:
            raise ServiceUnavailable(
                f"Invoice {record.invoice_id} is recorded but could not be queued yet. Retry with"
                " the same Idempotency-Key: the retry completes this invoice, never a second one."
            ) from exc
        try:
            failed = self._invoices.mark_failed(
                record.invoice_id,
                processed_at=self._clock(),
                error=FailureReason("EMIT_INCOMPLETE", f"not queued: {type(exc).__name__}"),
                # Refused once a worker holds it or has signed it: the execution did start.
                guard=FailGuard.never_sent(),
                # EmitFn has no ledger access: the sweeper writes this FAILED invoice's row.
                ledger_follows=False,
            )
        except Exception:
            log.exception("could not record the incomplete emit", extra={"id": record.invoice_id})
            raise ServiceUnavailable(
                f"Invoice {record.invoice_id} could not be queued and its state is unknown: check"
                f" GET /invoices/{record.invoice_id} before sending it again.",
                [FieldError("invoiceId", record.invoice_id)],
            ) from exc
        if not failed:
            current = self._invoices.get(record.invoice_id)
            if current is not None and current.status is not InvoiceStatus.FAILED:
                # The execution started after all (its answer was lost) and a worker has it.
                return EmitResult(record.invoice_id, current.status, record.xml_key)
        raise ServiceUnavailable(
            "The invoice could not be queued; it is recorded as FAILED (EMIT_INCOMPLETE)."
            " Retry the request; send an Idempotency-Key to make retries safe."
        ) from exc
