"""The forms of an invoice (DynamoDB item, GET answer, queue message, ledger row) all come from
InvoiceRecord's fields and agree with one another."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from nfse_core.domain.fiscal import Retencoes, compute_valores
from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.services.emit import queue_message
from nfse_core.services.queries import invoice_view
from nfse_core.store.invoices import PENDING_SHARD, from_item, to_item
from nfse_core.store.ledger import _COLUMNS, LedgerRow

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
VALORES = compute_valores(
    valor_servicos=Decimal("1500.00"),
    valor_deducoes=Decimal("100.00"),
    desconto_incondicionado=Decimal("0.00"),
    desconto_condicionado=Decimal("10.00"),
    retencoes=Retencoes(ir=Decimal("22.50")),
    aliquota=Decimal("2.50"),
    iss_retido=True,
)
RECORD = InvoiceRecord(
    invoice_id="01JD0000000000000000000000",
    tenant="acme",
    status=InvoiceStatus.FAILED,
    created_at=T0,
    total=Decimal("1500.00"),
    cnpj="11222333000181",
    municipio="3550308",
    rps=RpsIdentity(numero=7, serie="A1"),
    xml_key="xml/01JD0000000000000000000000.xml",
    inscricao_municipal="12345",
    processed_at=T0,
    error=FailureReason("PROVIDER_REJECTED", "E10: bad"),
    request_hash="abc",
    valores=VALORES,
)


def test_an_item_reads_back_as_the_record_it_was_written_from() -> None:
    item = to_item(RECORD)
    assert "leaseUntil" not in item and "lastChanceRuns" not in item
    assert PENDING_SHARD not in item  # final
    assert PENDING_SHARD in to_item(RECORD.with_status(InvoiceStatus.EMITTED))
    item["total"] = {"N": "1500"}  # DynamoDB drops trailing zeros
    assert from_item(item) == RECORD


def test_lease_fields_are_read_from_the_item() -> None:
    item = to_item(RECORD) | {
        "leaseUntil": {"S": "2026-11-20T12:01:00.000Z"},
        "leaseOwner": {"S": "me"},
        "lastChanceRuns": {"N": "2"},
    }
    read = from_item(item)
    assert read == replace(
        RECORD,
        lease_until=datetime(2026, 11, 20, 12, 1, tzinfo=UTC),
        lease_owner="me",
        last_chance_runs=2,
    )


def test_the_view_and_the_message_are_selections_of_the_document() -> None:
    assert invoice_view(RECORD) == {
        "invoiceId": RECORD.invoice_id,
        "status": "FAILED",
        "cnpj": RECORD.cnpj,
        "municipio": RECORD.municipio,
        "total": "1500.00",
        "rps": {"numero": 7, "serie": "A1", "tipo": 1},
        "reference": None,
        "xmlKey": RECORD.xml_key,
        "providerProtocol": None,
        "nfseNumber": None,
        "verificationCode": None,
        "accessKey": None,
        "createdAt": "2026-11-20T12:00:00.000Z",
        "processedAt": "2026-11-20T12:00:00.000Z",
        "error": {"code": "PROVIDER_REJECTED", "message": "E10: bad"},
        "valores": {
            "valorServicos": "1500.00",
            "valorDeducoes": "100.00",
            "descontoIncondicionado": "0.00",
            "descontoCondicionado": "10.00",
            "baseCalculo": "1400.00",
            "aliquota": "2.50",
            "valorIss": "35.00",
            "valorIssRetido": "35.00",
            "valorLiquido": "1432.50",  # 1500 - 22.50 - 35.00 - 10.00
            "issRetido": True,
            "retencoes": {
                "pis": "0.00",
                "cofins": "0.00",
                "inss": "0.00",
                "ir": "22.50",
                "csll": "0.00",
                "outras": "0.00",
            },
        },
    }
    assert queue_message(RECORD) == {
        "invoiceId": RECORD.invoice_id,
        "tenant": "acme",
        "cnpj": RECORD.cnpj,
        "municipio": RECORD.municipio,
        "xmlKey": RECORD.xml_key,
        "rps": {"numero": 7, "serie": "A1", "tipo": 1},
    }


def test_the_ledger_row_spreads_the_rps_and_the_error() -> None:
    row = LedgerRow.of(RECORD)
    assert (row.rps_numero, row.rps_serie, row.rps_tipo) == (7, "A1", 1)
    assert (row.error_code, row.error_message) == ("PROVIDER_REJECTED", "E10: bad")
    assert row.updated_at is None
    assert LedgerRow.of(replace(RECORD, error=None)).error_code is None
    assert _COLUMNS[_COLUMNS.index("status") + 1] == "status_rank"
