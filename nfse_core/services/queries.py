"""Read side of the API (GetFn): kept apart from the emit side so GetFn imports only this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfse_core.config import QuerySettings
from nfse_core.domain.errors import NotFound
from nfse_core.domain.ids import is_invoice_id
from nfse_core.store.aws import AwsClients
from nfse_core.store.invoices import InvoiceRecord, InvoiceRepository, iso


def invoice_view(record: InvoiceRecord) -> dict[str, Any]:
    """The GET answer: what a client may know about its invoice."""
    return {
        "invoiceId": record.invoice_id,
        "status": record.status.value,
        "cnpj": record.cnpj,
        "municipio": record.municipio,
        "total": format(record.total, "f"),
        "rps": {"numero": record.rps.numero, "serie": record.rps.serie, "tipo": record.rps.tipo},
        "reference": record.reference,
        "xmlKey": record.xml_key,
        "providerProtocol": record.provider_protocol,
        "nfseNumber": record.nfse_number,
        "verificationCode": record.verification_code,
        "createdAt": iso(record.created_at),
        "processedAt": iso(record.processed_at) if record.processed_at else None,
        "error": record.error.as_dict() if record.error else None,
    }


@dataclass(frozen=True, slots=True)
class InvoiceQueries:
    invoices: InvoiceRepository

    @classmethod
    def build(cls, settings: QuerySettings, clients: AwsClients | None = None) -> InvoiceQueries:
        aws = clients or AwsClients()
        return cls(InvoiceRepository(aws.dynamodb, settings.invoices_table))

    def get(self, tenant: str, invoice_id: str) -> dict[str, Any]:
        record = self.invoices.get(invoice_id) if is_invoice_id(invoice_id) else None
        # Another tenant's invoice answers exactly like an unknown one: nothing leaks.
        if record is None or record.tenant != tenant:
            raise NotFound("No such invoice")
        return invoice_view(record)
