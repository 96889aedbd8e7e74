"""The send lease on InvoicesTable (real conditional writes, moto): FAILED is never recorded
while a holder that may still be sending holds a lease, and leases only grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.invoices import InvoiceError, InvoiceRecord, InvoiceRepository

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ERROR = InvoiceError("PROVIDER_UNAVAILABLE", "503")


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


def test_a_stalled_holder_blocks_the_reprocessor_from_failing(repo: InvoiceRepository) -> None:
    # Worker A takes a lease to t=80 and stalls mid-send; the reprocessor B takes over at t=60.
    assert repo.mark_processing(ID, lease_until=at(80), owner="A")
    assert repo.mark_processing(ID, lease_until=at(140), owner="B")
    # B's own sends are over at t=70, but A's lease (kept as prevLeaseUntil) still runs.
    assert not repo.mark_failed(ID, processed_at=at(70), error=ERROR, owner="B")
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


def test_the_holder_may_fail_once_the_lease_it_replaced_is_over(repo: InvoiceRepository) -> None:
    assert repo.mark_processing(ID, lease_until=at(80), owner="A")
    assert repo.mark_processing(ID, lease_until=at(140), owner="B")
    assert repo.mark_failed(ID, processed_at=at(90), error=ERROR, owner="B")
    assert status(repo) is InvoiceStatus.FAILED


def test_nobody_else_fails_an_invoice_under_a_running_lease(repo: InvoiceRepository) -> None:
    assert repo.mark_processing(ID, lease_until=at(80), owner="A")
    assert not repo.mark_failed(ID, processed_at=at(50), error=ERROR, owner="C")
    assert not repo.mark_failed(ID, processed_at=at(50), error=ERROR)  # no owner at all
    assert repo.mark_failed(ID, processed_at=at(81), error=ERROR, owner="C")


def test_leases_only_grow(repo: InvoiceRepository) -> None:
    assert repo.mark_processing(ID, lease_until=at(100), owner="A")
    assert not repo.mark_processing(ID, lease_until=at(90), owner="B")
    record = repo.get(ID)
    assert record is not None and record.status is InvoiceStatus.PROCESSING


def test_no_lease_is_taken_on_a_final_invoice(repo: InvoiceRepository) -> None:
    assert repo.mark_failed(ID, processed_at=at(1), error=ERROR)
    assert not repo.mark_processing(ID, lease_until=at(100), owner="A")
    assert status(repo) is InvoiceStatus.FAILED


def test_a_released_lease_lets_others_decide_but_keeps_the_older_one(
    repo: InvoiceRepository,
) -> None:
    assert repo.mark_processing(ID, lease_until=at(80), owner="A")  # A may be stalled
    assert repo.mark_processing(ID, lease_until=at(140), owner="B")
    repo.release_lease(ID, "B")  # B gave up: its sends are over
    assert not repo.mark_failed(ID, processed_at=at(70), error=ERROR, owner="C")  # A still runs
    assert repo.mark_processing(ID, lease_until=at(150), owner="C")
    assert not repo.mark_failed(ID, processed_at=at(75), error=ERROR, owner="C")
    assert repo.mark_failed(ID, processed_at=at(81), error=ERROR, owner="C")


def test_releasing_someone_elses_lease_does_nothing(repo: InvoiceRepository) -> None:
    assert repo.mark_processing(ID, lease_until=at(80), owner="A")
    repo.release_lease(ID, "B")
    assert not repo.mark_failed(ID, processed_at=at(10), error=ERROR)
