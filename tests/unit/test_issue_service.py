"""The issuance decisions with fakes: when to consult, when to send, when FAILED is allowed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.providers.certificates import CERTIFICATE_REFUSED_LOG, CertificateNotFound
from nfse_core.providers.port import (
    FailureKind,
    Issued,
    ProviderMessage,
    Rejected,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.services.issue import DeliveryRetry, IssueService, Outcome
from nfse_core.store.documents import signed_key
from tests.fakes import FakeDocuments, FakeInvoices, FakeLedger, ScriptedProvider

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ISSUED = Issued("101", "ABC123", "P-1", NOW, b"<CompNfse/>")
DOWN = TemporaryFailure("503", FailureKind.HTTP_STATUS, http_status=503)
REJECTED = Rejected((ProviderMessage("E160", "Aliquota invalida"),))
DUPLICATE = Rejected((ProviderMessage("E10", "RPS ja informado"),), duplicate_rps=True)


def record(status: InvoiceStatus = InvoiceStatus.EMITTED) -> InvoiceRecord:
    return InvoiceRecord(
        invoice_id="01JDQ000000000000000000001",
        tenant="acme",
        status=status,
        created_at=NOW,
        total=Decimal("10.00"),
        cnpj="11222333000181",
        municipio="3550308",
        rps=RpsIdentity(numero=7, serie="1"),
        xml_key="xml/01JDQ000000000000000000001.xml",
    )


@dataclass
class World:
    provider: ScriptedProvider
    invoices: FakeInvoices = field(default_factory=lambda: FakeInvoices.holding(record()))
    documents: FakeDocuments = field(
        default_factory=lambda: FakeDocuments({"xml/01JDQ000000000000000000001.xml": b"<rps/>"})
    )
    ledger: FakeLedger = field(default_factory=FakeLedger)
    signer: Callable[[str, str, bytes], bytes] = lambda cnpj, municipio, doc: b"signed:" + doc
    now: datetime = NOW
    ticks: float = 0.0  # the monotonic clock; sleeping moves both clocks
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.ticks += seconds
        self.now += timedelta(seconds=seconds)

    def later(self, seconds: float) -> None:
        self.ticks += seconds
        self.now += timedelta(seconds=seconds)

    def service(self, attempts: int = 3) -> IssueService:
        return IssueService(
            invoices=self.invoices,
            documents=self.documents,
            signer=self.signer,
            provider_for=lambda municipio, cnpj: self.provider,
            ledger=self.ledger,
            clock=lambda: self.now,
            retry=DeliveryRetry(attempts=attempts, first_delay=0.0),
            sleep=self.sleep,
            monotonic=lambda: self.ticks,
        )

    def process(
        self, *, redelivered: bool = False, last_chance: bool = False, attempts: int = 3
    ) -> Outcome:
        return (
            self.service(attempts)
            .process("01JDQ000000000000000000001", redelivered=redelivered, last_chance=last_chance)
            .outcome
        )


def test_first_delivery_signs_stores_then_sends_without_consulting() -> None:
    world = World(ScriptedProvider(sends=[ISSUED]))
    assert world.process() is Outcome.ISSUED
    assert world.provider.calls == ["send"]
    assert world.invoices.released == []
    assert world.documents.objects["signed/01JDQ000000000000000000001.xml"] == b"signed:<rps/>"
    assert world.documents.objects["nfse/01JDQ000000000000000000001.xml"] == b"<CompNfse/>"
    assert world.invoices.record.status is InvoiceStatus.ISSUED
    assert world.ledger.rows[-1].status is InvoiceStatus.ISSUED


def test_redelivery_consults_first_and_records_what_it_finds() -> None:
    world = World(ScriptedProvider(consults=[ISSUED]))
    assert world.process(redelivered=True) is Outcome.ISSUED
    assert world.provider.calls == ["consult"]


def test_a_recorded_signed_document_means_an_earlier_try_so_consult_and_never_resign() -> None:
    world = World(ScriptedProvider(consults=[RpsNotFound()], sends=[ISSUED]))
    world.documents.objects["signed/01JDQ000000000000000000001.xml"] = b"signed:earlier"
    world.invoices.set_signed_key(ID, "signed/01JDQ000000000000000000001.xml")

    def never(cnpj: str, municipio: str, doc: bytes) -> bytes:
        raise AssertionError("re-signed")

    world.signer = never
    assert world.process() is Outcome.ISSUED
    assert world.provider.calls == ["consult", "send"]


def test_after_a_failed_send_every_retry_consults_before_sending() -> None:
    world = World(ScriptedProvider(sends=[DOWN, ISSUED], consults=[RpsNotFound()]))
    assert world.process() is Outcome.ISSUED
    assert world.provider.calls == ["send", "consult", "send"]


def test_a_lost_answer_is_found_by_the_consult_not_sent_again() -> None:
    world = World(ScriptedProvider(sends=[DOWN], consults=[ISSUED]))
    assert world.process() is Outcome.ISSUED
    assert world.provider.calls == ["send", "consult"]


def test_duplicate_rps_rejection_consults_instead_of_failing() -> None:
    world = World(ScriptedProvider(sends=[DUPLICATE], consults=[ISSUED]))
    assert world.process() is Outcome.ISSUED
    assert world.provider.calls == ["send", "consult"]


def test_business_rejection_is_final_failed() -> None:
    world = World(ScriptedProvider(sends=[REJECTED]))
    assert world.process() is Outcome.FAILED
    assert world.invoices.record.error == FailureReason(
        "PROVIDER_REJECTED", "E160: Aliquota invalida"
    )
    assert world.ledger.rows[-1].status is InvoiceStatus.FAILED


def test_temporary_failures_never_fail_the_invoice_in_the_worker() -> None:
    world = World(ScriptedProvider(sends=[DOWN], consults=[DOWN, DOWN]))
    assert world.process() is Outcome.RETRY
    assert world.provider.calls == ["send", "consult", "consult"]
    assert len(world.invoices.released) == 1  # its sends are over: the lease is handed back
    assert world.invoices.record.status is InvoiceStatus.PROCESSING
    assert world.ledger.rows == []


def test_the_last_chance_waits_for_its_own_send_to_settle_before_believing_not_found() -> None:
    """Defect: the last-chance run sent, the send timed out, and the consult right after said
    "not found": FAILED, while the provider was still processing that send (consult lag) and
    issued it moments later. Now the run waits the provider's settle time first."""
    world = World(ScriptedProvider(sends=[DOWN], consults=[RpsNotFound(), RpsNotFound()]))
    assert world.process(last_chance=True, attempts=1) is Outcome.FAILED
    assert world.provider.calls == ["consult", "send", "consult"]
    assert world.slept == [60.0]  # the provider's settle time after its last send
    assert world.invoices.record.error is not None
    assert world.invoices.record.error.code == "PROVIDER_UNAVAILABLE"


def test_an_nfse_that_appears_while_the_last_send_settles_is_recorded() -> None:
    world = World(ScriptedProvider(sends=[DOWN], consults=[RpsNotFound(), ISSUED]))
    assert world.process(last_chance=True, attempts=1) is Outcome.ISSUED
    assert world.invoices.record.status is InvoiceStatus.ISSUED


def test_a_later_dlq_run_only_consults() -> None:
    world = World(ScriptedProvider(consults=[DOWN, DOWN, RpsNotFound()]))
    assert world.process(last_chance=True, attempts=1) is Outcome.RETRY  # unreachable
    world.later(15 * 60)  # the next scheduled run
    assert world.process(last_chance=True, attempts=1) is Outcome.FAILED
    assert "send" not in world.provider.calls


def test_not_found_before_the_previous_sends_settled_proves_nothing() -> None:
    # The worker sent at t=0 and its lease was handed back; ProcessorFn comes 30 s later, when
    # the provider (settle 60 s) may still be processing that send.
    world = World(ScriptedProvider(consults=[RpsNotFound(), RpsNotFound()]))
    world.invoices.another_holder_sends_until(NOW)
    world.documents.objects[signed_key(ID)] = b"signed:earlier"
    world.later(30)
    world.invoices.record = replace(world.invoices.record, last_chance_runs=1)  # a second run
    assert world.process(last_chance=True, attempts=1) is Outcome.RETRY
    assert world.invoices.record.status is InvoiceStatus.PROCESSING


def test_last_chance_with_an_unreachable_provider_stays_undecided() -> None:
    world = World(ScriptedProvider(consults=[DOWN, DOWN, DOWN]))
    assert world.process(last_chance=True, attempts=1) is Outcome.RETRY
    world.later(15 * 60)
    assert world.process(last_chance=True, attempts=1) is Outcome.RETRY
    assert world.invoices.record.status is InvoiceStatus.PROCESSING
    assert world.provider.calls == ["consult", "consult", "consult"]


def test_an_inconclusive_consult_never_fails_the_invoice() -> None:
    """Defect: any message list in a consult answer was read as "not found". A list with an
    internal error beside the not-found code is undecided (the parser makes it a
    TemporaryFailure); the last chance then leaves the invoice for later."""
    inconclusive = TemporaryFailure("consult undecided: E4; E999", FailureKind.INCONCLUSIVE)
    world = World(ScriptedProvider(sends=[DOWN], consults=[RpsNotFound(), inconclusive]))
    assert world.process(last_chance=True, attempts=1) is Outcome.RETRY
    assert world.invoices.record.status is InvoiceStatus.PROCESSING


def test_last_chance_finds_an_issued_nfse_on_the_final_consult() -> None:
    world = World(ScriptedProvider(consults=[DOWN, ISSUED]))
    assert world.process(last_chance=True, attempts=1) is Outcome.ISSUED


@pytest.mark.parametrize("status", [InvoiceStatus.ISSUED, InvoiceStatus.FAILED])
def test_final_invoices_are_not_touched_but_the_ledger_catches_up(status: InvoiceStatus) -> None:
    world = World(ScriptedProvider())
    world.invoices.record = record(status)
    assert world.process(redelivered=True) is Outcome.ALREADY_FINAL
    assert world.provider.calls == []
    assert world.ledger.rows[-1].status is status


ID = "01JDQ000000000000000000001"


def test_unknown_invoice_is_dropped_without_calls() -> None:
    world = World(ScriptedProvider())
    world.invoices.record = replace(record(), invoice_id="01JDQ999999999999999999999")
    assert world.process() is Outcome.DROPPED
    assert world.provider.calls == []


def test_missing_certificate_fails_with_a_clear_code_and_no_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(ScriptedProvider())

    def no_cert(cnpj: str, municipio: str, doc: bytes) -> bytes:
        raise CertificateNotFound(cnpj, "no secret nfse/certificates/11222333000181")

    world.signer = no_cert
    with caplog.at_level(logging.ERROR):
        assert world.process() is Outcome.FAILED
    # The line the CertificatesRefused metric filter counts (template.yaml).
    assert [r.getMessage() for r in caplog.records].count(CERTIFICATE_REFUSED_LOG) == 1
    assert world.invoices.record.error is not None
    assert world.invoices.record.error.code == "CERTIFICATE_UNAVAILABLE"
    assert world.provider.calls == []


def _tls_certificate_missing(world: World) -> IssueService:
    """A provider that authenticates the connection with the company's certificate, missing."""

    def provider_for(municipio: str, cnpj: str) -> ScriptedProvider:
        raise CertificateNotFound(cnpj, "no secret nfse/certificates/11222333000181")

    return IssueService(
        invoices=world.invoices,
        documents=world.documents,
        signer=world.signer,
        provider_for=provider_for,
        ledger=world.ledger,
        clock=lambda: NOW,
        retry=DeliveryRetry(first_delay=0.0),
        sleep=lambda _: None,
    )


def test_missing_tls_certificate_before_any_send_fails_with_a_clear_code() -> None:
    world = World(ScriptedProvider())
    result = _tls_certificate_missing(world).process(
        "01JDQ000000000000000000001", redelivered=False
    )
    assert result.outcome is Outcome.FAILED
    assert world.invoices.record.error is not None
    assert world.invoices.record.error.code == "CERTIFICATE_UNAVAILABLE"
    assert world.provider.calls == []


def test_missing_tls_certificate_after_an_earlier_send_retries_never_fails() -> None:
    # The earlier send may have been issued: without the certificate nobody can consult, so
    # the invoice must wait for it rather than be declared FAILED.
    world = World(ScriptedProvider())
    world.invoices.set_signed_key(ID, "signed/01JDQ000000000000000000001.xml")
    result = _tls_certificate_missing(world).process(
        "01JDQ000000000000000000001", redelivered=True, last_chance=True
    )
    assert result.outcome is Outcome.RETRY
    assert world.invoices.record.status is InvoiceStatus.EMITTED
    assert world.invoices.record.error is None


def test_retry_budget_stops_new_attempts() -> None:
    world = World(ScriptedProvider(sends=[DOWN], consults=[]))
    clock = iter([0.0, 0.0, 0.0, 0.0, 100.0])  # lease, start, send check, sent, second try
    service = IssueService(
        invoices=world.invoices,
        documents=world.documents,
        signer=world.signer,
        provider_for=lambda municipio, cnpj: world.provider,
        ledger=world.ledger,
        clock=lambda: NOW,
        retry=DeliveryRetry(attempts=5, first_delay=1.0, budget_seconds=10.0),
        sleep=lambda _: None,
        monotonic=lambda: next(clock),
    )
    result = service.process("01JDQ000000000000000000001", redelivered=False)
    assert result.outcome is Outcome.RETRY
    assert world.provider.calls == ["send"]


def test_a_running_lease_of_another_holder_means_no_send_at_all() -> None:
    world = World(ScriptedProvider(sends=[ISSUED]))
    world.invoices.another_holder_sends_until(NOW + timedelta(seconds=30))
    assert world.process(redelivered=True) is Outcome.RETRY
    assert world.provider.calls == []


def test_failed_is_refused_while_another_holder_may_be_sending() -> None:
    world = World(ScriptedProvider(sends=[DOWN], consults=[RpsNotFound(), RpsNotFound()]))
    world.invoices.another_holder_sends_until(NOW + timedelta(seconds=30))
    result = world.service(1).process(ID, redelivered=True, last_chance=True)
    assert result.outcome is Outcome.RETRY and "lease" in result.detail
    assert world.invoices.record.status is InvoiceStatus.PROCESSING
    assert world.ledger.rows == []


def test_a_rejection_after_another_holder_sent_is_still_final_once_that_lease_ended() -> None:
    world = World(ScriptedProvider(sends=[REJECTED], consults=[RpsNotFound()]))
    world.invoices.another_holder_sends_until(NOW - timedelta(seconds=1))
    world.documents.objects[signed_key(ID)] = b"signed:earlier"
    assert world.process(redelivered=True) is Outcome.FAILED
    assert world.provider.calls == ["consult", "send"]


def test_no_send_starts_that_could_outlive_the_lease() -> None:
    world = World(ScriptedProvider(sends=[DOWN, ISSUED], consults=[RpsNotFound()]))
    # lease, start, send check, sent; the second try comes late in the lease: budget check,
    # send check, sent.
    ticks = iter([0.0, 0.0, 0.0, 0.0, 45.0, 45.0, 45.0])
    service = IssueService(
        invoices=world.invoices,
        documents=world.documents,
        signer=world.signer,
        provider_for=lambda municipio, cnpj: world.provider,
        ledger=world.ledger,
        clock=lambda: NOW,
        retry=DeliveryRetry(attempts=3, first_delay=0.0, budget_seconds=100.0),
        sleep=lambda _: None,
        monotonic=lambda: next(ticks),
    )
    # lease = 100 budget + 2 x 1 s call + 5 margin = 107 s; at 45 s a send still fits.
    assert (
        service.process("01JDQ000000000000000000001", redelivered=False).outcome is Outcome.ISSUED
    )
