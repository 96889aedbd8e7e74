"""EmitService with in-memory fakes: order of writes, authorization, and no half-written invoice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nfse_core.domain.errors import Forbidden, SchemaInvalid, ServiceUnavailable
from nfse_core.domain.status import InvoiceStatus
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.services.emit import EmitService
from nfse_core.store.invoices import InvoiceError, InvoiceRecord
from nfse_local.samples import invoice_body

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class FakeWorld:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.items: dict[str, InvoiceRecord] = {}
        self.objects: dict[str, bytes] = {}
        self.counter = 0
        self.fail_on: str | None = None

    # Invoices
    def put_emitted(self, record: InvoiceRecord) -> None:
        self.calls.append("put_item")
        self.items[record.invoice_id] = record

    def mark_failed(self, invoice_id: str, *, processed_at: datetime, error: InvoiceError) -> bool:
        self.calls.append("mark_failed")
        self.items[invoice_id] = self.items[invoice_id].with_status(InvoiceStatus.FAILED)
        return True

    # Counter
    def next(self, cnpj: str, serie: str) -> int:
        self.calls.append("counter")
        self.counter += 1
        return self.counter

    # Tenants
    def cnpjs_of(self, tenant_id: str) -> frozenset[str]:
        return frozenset({"11222333000181"}) if tenant_id == "acme" else frozenset()

    # Documents
    def put_xml(self, key: str, body: bytes) -> None:
        self.calls.append("put_object")
        if self.fail_on == "s3":
            raise ConnectionError("s3 down")
        self.objects[key] = body

    # Orchestrator
    def start(self, invoice_id: str, payload: dict[str, Any]) -> str:
        self.calls.append("start_execution")
        if self.fail_on == "sfn":
            raise ConnectionError("states down")
        return "arn:execution"


def service(world: FakeWorld) -> EmitService:
    ids = iter(f"01JDQ{n:021d}" for n in range(1, 100))
    return EmitService(
        invoices=world,
        counter=world,
        tenants=world,
        documents=world,
        orchestrator=world,
        clock=lambda: NOW,
        new_id=lambda: next(ids),
        serie="1",
    )


def request(**overrides: Any) -> Any:
    return parse_invoice_request(invoice_body(**overrides), today=NOW.date())


def test_writes_in_the_documented_order() -> None:
    world = FakeWorld()
    result = service(world).emit("acme", request())
    assert world.calls == ["counter", "put_item", "put_object", "start_execution"]
    assert result.status is InvoiceStatus.EMITTED
    assert result.xml_key == f"xml/{result.invoice_id}.xml"
    record = world.items[result.invoice_id]
    assert record.rps.numero == 1 and record.tenant == "acme"
    assert b"InfDeclaracaoPrestacaoServico" in world.objects[result.xml_key]


def test_foreign_cnpj_is_forbidden_before_any_write() -> None:
    world = FakeWorld()
    with pytest.raises(Forbidden) as caught:
        service(world).emit("globex", request())
    assert caught.value.details[0].field == "cnpj"
    assert world.calls == []


def test_xsd_failure_writes_nothing_but_burns_the_number() -> None:
    world = FakeWorld()
    body = invoice_body()
    del body["tomador"]["razaoSocial"]
    with pytest.raises(SchemaInvalid):
        service(world).emit("acme", parse_invoice_request(body, today=NOW.date()))
    assert world.calls == ["counter"]
    assert world.items == {} and world.objects == {}


@pytest.mark.parametrize("failing", ["s3", "sfn"])
def test_a_later_failure_leaves_a_visible_failed_invoice(failing: str) -> None:
    world = FakeWorld()
    world.fail_on = failing
    with pytest.raises(ServiceUnavailable):
        service(world).emit("acme", request())
    assert world.calls[-1] == "mark_failed"
    (record,) = world.items.values()
    assert record.status is InvoiceStatus.FAILED
