"""The send lease on InvoicesTable (real conditional writes, moto): FAILED is never recorded
while a holder that may still be sending holds a lease, and leases only grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.invoices import FailGuard, InvoiceRepository

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ERROR = FailureReason("PROVIDER_UNAVAILABLE", "503")


@pytest.fixture
def repo(stack_env: dict[str, str], aws: boto3.session.Session) -> InvoiceRepository:
    repository = InvoiceRepository(aws.client("dynamodb"), stack_env["INVOICES_TABLE"])
    repository.put_emitted(
        InvoiceRecord(
            invoice_id="01JDQ000000000000000000001",
            tenant="acme",
            status=InvoiceStatus.EMITTED,
            created_at=T0,
            total=Decimal("10.00"),
            cnpj="11222333000181",
            municipio="3550308",
            rps=RpsIdentity(numero=1, serie="1"),
            xml_key="xml/01JDQ000000000000000000001.xml",
        )
    )
    return repository


ID = "01JDQ000000000000000000001"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(repo: InvoiceRepository) -> InvoiceStatus:
    record = repo.get(ID)
    assert record is not None
    return record.status


def lease(repo: InvoiceRepository, owner: str, start: float, end: float, **kw: bool) -> bool:
    return (
        repo.mark_processing(ID, now=at(start), lease_until=at(end), owner=owner, **kw) is not None
    )


def rejected(owner: str, at_seconds: float) -> FailGuard:
    return FailGuard.holder(owner, settled_before=at(at_seconds))


def test_a_lease_is_exclusive_while_it_runs(repo: InvoiceRepository) -> None:
    """Defect: a later lease always won, so a second holder could send and decide while the
    first was still talking to the provider."""
    assert lease(repo, "A", 0, 80)
    assert not lease(repo, "B", 60, 140)  # A may still be sending: B neither sends nor decides
    record = repo.get(ID)
    assert record is not None and record.lease_owner == "A"
    assert lease(repo, "B", 81, 160)  # A's lease is over: its sends ended by its deadline


def test_a_stalled_holder_blocks_the_reprocessor_from_failing(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    # B cannot take over, nor record FAILED, while A's lease runs.
    assert not lease(repo, "B", 60, 140)
    assert not repo.mark_failed(ID, processed_at=at(70), error=ERROR, guard=rejected("B", 70))
    assert not repo.mark_failed(ID, processed_at=at(70), error=ERROR, guard=FailGuard.never_sent())
    assert status(repo) is InvoiceStatus.PROCESSING
    # A's send comes back issued: ISSUED is always allowed from PROCESSING.
    assert repo.mark_issued(
        ID,
        processed_at=at(75),
        provider_protocol="P",
        nfse_number="9",
        verification_code="X",
        signed_key=None,
        nfse_key=None,
    )
    assert status(repo) is InvoiceStatus.ISSUED


def test_not_found_counts_only_after_the_previous_sends_settled(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    repo.release_lease(ID, "A", now=at(30))  # A's sends ended at 30
    assert lease(repo, "B", 40, 140)
    # With a provider that may take 60 s to show an NFS-e, B's "not found" proves something
    # only from 30 + 60 = 90 on.
    assert not repo.mark_failed(
        ID, processed_at=at(50), error=ERROR, guard=FailGuard.holder("B", at(50 - 60))
    )
    assert repo.mark_failed(
        ID, processed_at=at(95), error=ERROR, guard=FailGuard.holder("B", at(95 - 60))
    )
    assert status(repo) is InvoiceStatus.FAILED


def test_only_the_holder_decides(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    assert not repo.mark_failed(ID, processed_at=at(50), error=ERROR, guard=rejected("C", 50))
    assert repo.mark_failed(ID, processed_at=at(50), error=ERROR, guard=rejected("A", 50))


def test_never_sent_means_no_signed_document_and_no_other_lease(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    repo.set_signed_key(ID, "signed/x.xml")  # A is about to send
    repo.release_lease(ID, "A", now=at(10))
    # A send may have happened: a failure "before any send" cannot be claimed any more.
    assert not repo.mark_failed(ID, processed_at=at(90), error=ERROR, guard=FailGuard.never_sent())
    assert status(repo) is InvoiceStatus.PROCESSING


def test_never_sent_is_allowed_to_the_holder_itself(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    assert not repo.mark_failed(ID, processed_at=at(5), error=ERROR, guard=FailGuard.never_sent())
    assert repo.mark_failed(
        ID, processed_at=at(5), error=ERROR, guard=FailGuard.never_sent(owner="A")
    )


def test_no_lease_is_taken_on_a_final_invoice(repo: InvoiceRepository) -> None:
    assert repo.mark_failed(ID, processed_at=at(1), error=ERROR, guard=FailGuard.never_sent())
    assert not lease(repo, "A", 2, 100)
    assert status(repo) is InvoiceStatus.FAILED


def test_a_released_lease_lets_the_next_holder_in_at_once(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    repo.release_lease(ID, "A", now=at(20))
    assert lease(repo, "B", 21, 120)
    record = repo.get(ID)
    assert record is not None and record.prev_lease_until == at(20)


def test_releasing_someone_elses_lease_does_nothing(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80)
    repo.release_lease(ID, "B", now=at(5))
    assert not lease(repo, "C", 10, 90)


def test_dlq_runs_are_counted(repo: InvoiceRepository) -> None:
    assert lease(repo, "A", 0, 80, last_chance=True)
    repo.release_lease(ID, "A", now=at(10))
    assert lease(repo, "B", 900, 980, last_chance=True)
    record = repo.get(ID)
    assert record is not None and record.last_chance_runs == 2
