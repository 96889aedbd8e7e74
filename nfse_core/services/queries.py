"""Read side of the API (GetFn): kept apart from the emit side so GetFn imports only this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfse_core.domain.errors import NotFound
from nfse_core.domain.ids import is_invoice_id
from nfse_core.domain.invoice import InvoiceRecord, to_document
from nfse_core.store.invoices import InvoiceRepository

# What a client may know about its invoice, in the answer's order.
VIEW_ATTRIBUTES = (
    "invoice_id",
    "status",
    "cnpj",
    "municipio",
    "total",
    "rps",
    "reference",
    "xml_key",
    "provider_protocol",
    "nfse_number",
    "verification_code",
    "access_key",
    "created_at",
    "processed_at",
    "error",
    "valores",
)


def invoice_view(record: InvoiceRecord) -> dict[str, Any]:
    """The GET answer: the invoice's document, restricted to VIEW_ATTRIBUTES, with the total
    as a decimal string."""
    view = to_document(record, VIEW_ATTRIBUTES)
    view["total"] = format(record.total, "f")
    return view


@dataclass(frozen=True, slots=True)
class InvoiceQueries:
    invoices: InvoiceRepository

    def get(self, tenant: str, invoice_id: str) -> dict[str, Any]:
        record = self.invoices.get(invoice_id) if is_invoice_id(invoice_id) else None
        # Another tenant's invoice answers exactly like an unknown one: nothing leaks.
        if record is None or record.tenant != tenant:
            raise NotFound("No such invoice")
        return invoice_view(record)
