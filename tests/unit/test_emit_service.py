"""EmitService with in-memory fakes: order of writes, authorization, no half-written invoice,
and one invoice per idempotency key whatever happened to the first attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from nfse_core.domain.errors import (
    Forbidden,
    IdempotencyConflict,
    NotSupportedByProvider,
    SchemaInvalid,
    ServiceUnavailable,
)
from nfse_core.domain.ids import idempotency_scope, keyed_invoice_id
from nfse_core.domain.status import InvoiceStatus
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.registry import ProviderNotConfigured, ProviderRegistry, parse_overlay
from nfse_core.services.emit import EmitService
from nfse_core.services.idempotent import body_fingerprint
from nfse_core.store.invoices import FailGuard
from nfse_local.samples import invoice_body, nacional_body
from tests import plugin_double
from tests.fakes import (
    FakeCounter,
    FakeDocuments,
    FakeInvoices,
    FakeOrchestrator,
    FakeTenants,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
SIMULATOR = "http://127.0.0.1:8089/nfse"


class World:
    """The fakes of EmitService's ports, sharing one journal of calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.invoices = FakeInvoices(calls=self.calls)
        self.counter = FakeCounter(calls=self.calls)
        self.tenants = FakeTenants({"acme": frozenset({"11222333000181"})})
        # Local mode (a simulator answers for every municipality): nothing refused for lack of
        # a registry entry; test_a_municipality_without_a_provider_... holds that refusal.
        self.registry = ProviderRegistry.default(endpoint_override=SIMULATOR)
        self.documents = FakeDocuments(calls=self.calls)
        self.orchestrator = FakeOrchestrator(calls=self.calls)

    def fail_on(self, failing: str | None) -> None:
        """Make S3 ("s3") or Step Functions ("sfn") unreachable, or neither (None)."""
        self.documents.down = failing == "s3"
        self.orchestrator.down = failing == "sfn"


def service(world: World) -> EmitService:
    ids = iter(f"01JDQ{n:021d}" for n in range(1, 100))
    return EmitService(
        invoices=world.invoices,
        counter=world.counter,
        tenants=world.tenants,
        standards=world.registry,
        documents=world.documents,
        orchestrator=world.orchestrator,
        clock=lambda: NOW,
        new_id=lambda: next(ids),
        serie="1",
    )


def request(**overrides: Any) -> Any:
    return parse_invoice_request(invoice_body(**overrides), today=NOW.date())


def keyed(key: str = "erp-42", **overrides: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "request_hash": body_fingerprint(invoice_body(**overrides))}


def test_writes_in_the_documented_order() -> None:
    world = World()
    result = service(world).emit("acme", request())
    assert world.calls == ["counter", "put_item", "put_object", "start_execution"]
    assert result.status is InvoiceStatus.EMITTED
    assert result.xml_key == f"xml/{result.invoice_id}.xml"
    record = world.invoices.items[result.invoice_id]
    assert record.rps.numero == 1 and record.tenant == "acme"
    assert b"InfDeclaracaoPrestacaoServico" in world.documents.objects[result.xml_key]


def test_foreign_cnpj_is_forbidden_before_any_write() -> None:
    world = World()
    with pytest.raises(Forbidden) as caught:
        service(world).emit("globex", request())
    assert caught.value.details[0].field == "cnpj"
    assert world.calls == []


def test_xsd_failure_writes_nothing_but_burns_the_number() -> None:
    world = World()
    body = invoice_body()
    del body["tomador"]["razaoSocial"]
    with pytest.raises(SchemaInvalid):
        service(world).emit("acme", parse_invoice_request(body, today=NOW.date()))
    assert world.calls == ["counter"]
    assert world.invoices.items == {} and world.documents.objects == {}


@pytest.mark.parametrize("item", ["01.09", "06.06", "11.05", "14.14", "16.02", "17.25", "25.05"])
def test_an_item_the_2_04_schema_lacks_is_a_422_before_any_number(item: str) -> None:
    # LC 157/2016 and LC 183/2021 items: valid requests, but the ABRASF 2.04 XSD's
    # tsItemListaServico does not enumerate them.
    world = World()
    with pytest.raises(NotSupportedByProvider) as caught:
        service(world).emit("acme", request(itemListaServico=item))
    assert caught.value.status == 422
    assert caught.value.code == "NOT_SUPPORTED_BY_PROVIDER"
    (detail,) = caught.value.details
    assert detail.field == "itemListaServico"
    assert item in detail.message and "ABRASF 2.04" in detail.message
    assert "3550308" in detail.message
    assert world.calls == []


def test_the_computed_amounts_are_recorded_with_the_invoice() -> None:
    world = World()
    sent = request(
        total="1000.00", aliquota="5.00", valorDeducoes="200.00", retencoes={"ir": "15.00"}
    )
    result = service(world).emit("acme", sent)
    valores = world.invoices.items[result.invoice_id].valores
    assert valores is not None
    assert (valores.base_calculo, valores.valor_iss) == (Decimal("800.00"), Decimal("40.00"))
    assert valores.valor_liquido == Decimal("985.00")


@pytest.mark.parametrize("failing", ["s3", "sfn"])
def test_without_a_key_a_later_failure_leaves_a_visible_failed_invoice(failing: str) -> None:
    world = World()
    world.fail_on(failing)
    with pytest.raises(ServiceUnavailable):
        service(world).emit("acme", request())
    assert world.calls[-1] == "mark_failed"
    assert world.invoices.failures == [(FailGuard.never_sent(), False)]
    (record,) = world.invoices.items.values()
    assert record.status is InvoiceStatus.FAILED
    assert record.error is not None and record.error.code == "EMIT_INCOMPLETE"


def test_without_a_key_a_refused_failed_means_the_invoice_is_on_its_way() -> None:
    """Defect: StartExecution's answer was lost but the execution ran and a worker took the
    invoice, so FAILED is refused. The old code still answered "recorded as FAILED, retry":
    the client's retry made a second invoice, and both were issued."""
    world = World()
    world.fail_on("sfn")
    world.invoices.worker_holds = True
    result = service(world).emit("acme", request())
    assert world.invoices.failures == [(FailGuard.never_sent(), False)]
    assert result.status is InvoiceStatus.PROCESSING
    (record,) = world.invoices.items.values()
    assert record.invoice_id == result.invoice_id and record.status is InvoiceStatus.PROCESSING


def test_without_a_key_an_unknown_state_is_said_with_the_invoice_id() -> None:
    world = World()
    world.fail_on("sfn")
    world.invoices.unavailable = True
    with pytest.raises(ServiceUnavailable) as caught:
        service(world).emit("acme", request())
    assert world.invoices.failures == [(FailGuard.never_sent(), False)]
    (invoice_id,) = world.invoices.items
    assert invoice_id in caught.value.message
    assert caught.value.details[0].field == "invoiceId"


@pytest.mark.parametrize("failing", ["s3", "sfn"])
def test_with_a_key_a_later_failure_keeps_the_invoice_and_the_retry_completes_it(
    failing: str,
) -> None:
    """Defect: a failure after the item was written marked it FAILED and freed the key; the
    retry then made a second invoice with a new RPS. Now the retry finishes the first one."""
    world = World()
    emitter = service(world)
    world.fail_on(failing)
    with pytest.raises(ServiceUnavailable) as caught:
        emitter.emit("acme", request(), **keyed())
    (invoice_id,) = world.invoices.items
    assert invoice_id in caught.value.message
    # Not FAILED: kept for a retry.
    assert world.invoices.items[invoice_id].status is InvoiceStatus.EMITTED
    assert "mark_failed" not in world.calls

    world.fail_on(None)
    world.calls.clear()
    result = emitter.emit("acme", request(), **keyed())
    assert result.invoice_id == invoice_id
    assert world.calls == ["put_object", "start_execution"]  # no new RPS number, no new item
    assert world.counter.last == 1
    assert world.documents.objects[result.xml_key].count(b"<Numero>1</Numero>") == 1


def test_with_a_key_a_retry_after_the_first_answer_was_lost_lands_on_the_same_invoice() -> None:
    """Defect: StartExecution succeeded, then the Lambda died (or boto's retries outlasted it);
    the idempotency record was deleted or expired, and a retry created a second invoice with a
    new RPS. The invoice id is the key's, so the retry finds the first invoice."""
    world = World()
    emitter = service(world)
    first = emitter.emit("acme", request(), **keyed())
    # Later: Powertools no longer remembers the key; the same request comes again.
    again = emitter.emit("acme", request(), **keyed())
    assert again.invoice_id == first.invoice_id
    assert len(world.invoices.items) == 1 and world.counter.last == 1
    assert len(world.orchestrator.executions) == 2  # re-driven (harmless: the worker is idempotent)


def test_a_key_on_a_final_invoice_answers_it_without_any_write() -> None:
    world = World()
    emitter = service(world)
    first = emitter.emit("acme", request(), **keyed())
    items = world.invoices.items
    items[first.invoice_id] = items[first.invoice_id].with_status(InvoiceStatus.ISSUED)
    world.calls.clear()
    again = emitter.emit("acme", request(), **keyed())
    assert (again.invoice_id, again.status) == (first.invoice_id, InvoiceStatus.ISSUED)
    assert world.calls == []


def test_a_key_reused_with_another_body_is_a_conflict() -> None:
    world = World()
    emitter = service(world)
    emitter.emit("acme", request(), **keyed())
    with pytest.raises(IdempotencyConflict):
        emitter.emit("acme", request(total="99.00"), **keyed(total="99.00"))
    assert len(world.invoices.items) == 1 and world.counter.last == 1


def test_the_same_key_of_two_tenants_makes_two_invoices() -> None:
    assert keyed_invoice_id("acme", "k") != keyed_invoice_id("globex", "k")


def test_tenant_and_key_cannot_be_confused_through_a_separator() -> None:
    """Defect: the idempotency key was f"{tenant}#{key}", so tenant "a#b" with key "c" and
    tenant "a" with key "b#c" shared one record."""
    assert idempotency_scope("a#b", "c") != idempotency_scope("a", "b#c")
    assert keyed_invoice_id("a#b", "c") != keyed_invoice_id("a", "b#c")


def test_the_document_is_the_one_of_the_standard_the_registry_picks() -> None:
    """A municipality the registry maps to another standard gets that standard's document;
    the others (and municipalities it does not know) keep the ABRASF 2.04 RPS."""
    world = World()
    with plugin_double.installed():
        overlay = {"schema_version": 1, "municipios": {"3550308": plugin_double.entry("outro")}}
        world.registry = ProviderRegistry(*parse_overlay(overlay), endpoint_override=SIMULATOR)
        emitter = service(world)
        marked = emitter.emit("acme", request())
        abrasf = emitter.emit("acme", request(municipio="3133808"))
    document = world.documents.objects[marked.xml_key]
    assert (
        document
        == (
            f'<TestDocument standard="{plugin_double.KEY}" municipio="3550308"'
            f' rps="1-1" invoice="{marked.invoice_id}" on="2026-11-20"/>'
        ).encode()
    )
    assert b"InfDeclaracaoPrestacaoServico" in world.documents.objects[abrasf.xml_key]


def test_which_items_are_refused_is_the_standard_s_to_say() -> None:
    """01.09 is beyond the ABRASF 2.04 list but within the test standard's; the test standard
    lacks 17.25 and says so in its own words."""
    world = World()
    with plugin_double.installed():
        overlay = {"schema_version": 1, "municipios": {"3550308": plugin_double.entry("outro")}}
        world.registry = ProviderRegistry(*parse_overlay(overlay), endpoint_override=SIMULATOR)
        emitter = service(world)
        assert emitter.emit("acme", request(itemListaServico="01.09")).status.value == "EMITTED"
        with pytest.raises(NotSupportedByProvider) as caught:
            emitter.emit("acme", request(itemListaServico="17.25"))
        with pytest.raises(NotSupportedByProvider):
            emitter.emit("acme", request(municipio="3133808", itemListaServico="01.09"))
    assert caught.value.details[0].message == f"not in {plugin_double.KEY}"


@pytest.mark.parametrize(
    ("municipio", "environment", "why"),
    [
        ("3550308", "homologacao", "São Paulo/SP): no NFS-e provider this deployment supports"),
        ("4106902", "producao", "Curitiba/PR): no NFS-e provider this deployment supports"),
    ],
)
def test_a_municipality_without_a_provider_is_a_422_before_any_number(
    municipio: str, environment: str, why: str
) -> None:
    """Outside local mode, a municipality with no registry entry (it adheres to no standard
    the registry knows, the national one included) is refused at emit: nothing is numbered."""
    world = World()
    world.registry = ProviderRegistry.default(environment=environment)  # type: ignore[arg-type]
    with pytest.raises(ProviderNotConfigured) as caught:
        service(world).emit("acme", request(municipio=municipio))
    assert caught.value.status == 422 and caught.value.code == "MUNICIPALITY_NOT_SUPPORTED"
    assert caught.value.details[0].field == "municipio" and why in caught.value.message
    assert world.calls == []
    # Belo Horizonte adheres to the Sistema Nacional NFS-e: accepted, numbered, a DPS.
    belo_horizonte = service(world).emit(
        "acme", parse_invoice_request(nacional_body(), today=NOW.date())
    )
    assert belo_horizonte.status is InvoiceStatus.EMITTED
