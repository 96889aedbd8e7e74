"""SweeperFn's use case against moto (the PendingIndex from template.yaml) and PostgreSQL: no
invoice stays stuck, and the ledger gets the rows of invoices nobody else could record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from nfse_core.bootstrap import build_sweeper
from nfse_core.config import SweeperSettings
from nfse_core.domain.ids import new_invoice_id
from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.aws import AwsClients
from nfse_core.store.documents import DocumentStore, xml_key
from nfse_core.store.invoices import PENDING_SHARD, FailGuard, InvoiceRepository
from nfse_core.store.ledger import Ledger
from nfse_local.resources import LocalResources

pytestmark = pytest.mark.integration
CREATED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LATER = CREATED + timedelta(minutes=20)  # past the 15-minute re-drive threshold


@pytest.fixture
def repo(resources: LocalResources, aws: boto3.session.Session) -> InvoiceRepository:
    return InvoiceRepository(aws.client("dynamodb"), resources.invoices_table)


def invoice(repo: InvoiceRepository, number: int, *, with_xml: bool, docs: DocumentStore) -> str:
    invoice_id = new_invoice_id(CREATED)
    record = InvoiceRecord(
        invoice_id=invoice_id,
        tenant="acme",
        status=InvoiceStatus.EMITTED,
        created_at=CREATED,
        total=Decimal("10.00"),
        cnpj="11222333000181",
        municipio="3550308",
        rps=RpsIdentity(numero=number, serie="1"),
        xml_key=xml_key(invoice_id),
    )
    assert repo.put_emitted(record)
    if with_xml:
        docs.put_xml(record.xml_key, b"<GerarNfseEnvio/>")
    return invoice_id


def sweep(resources: LocalResources, ledger_url: str, now: datetime) -> dict[str, int | bool]:
    env = resources.function_env("SweeperFn") | {"DATABASE_URL": ledger_url}
    settings = SweeperSettings.from_env(env)
    return build_sweeper(settings, AwsClients(), clock=lambda: now).run().as_dict()


def messages(aws: boto3.session.Session, url: str) -> list[dict[str, object]]:
    answer = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


@pytest.fixture
def docs(resources: LocalResources, aws: boto3.session.Session) -> DocumentStore:
    return DocumentStore(aws.client("s3"), resources.docs_bucket)


def test_an_invoice_nothing_works_on_is_redriven_once(
    resources: LocalResources,
    repo: InvoiceRepository,
    docs: DocumentStore,
    ledger: Ledger,
    ledger_url: str,
    aws: boto3.session.Session,
) -> None:
    """Defect: an invoice left EMITTED (EmitFn died after its DynamoDB write, before
    StartExecution; or the DLQ message expired) was stuck for ever: nothing re-drove it."""
    invoice_id = invoice(repo, 1, with_xml=True, docs=docs)
    summary = sweep(resources, ledger_url, LATER)
    assert summary["redriven"] == 1
    (body,) = messages(aws, resources.requests_queue_url)
    assert body["invoiceId"] == invoice_id and body["xmlKey"] == xml_key(invoice_id)
    # It now counts as worked on: the next sweep leaves it to the worker.
    again = sweep(resources, ledger_url, LATER + timedelta(minutes=5))
    assert again["redriven"] == 0 and again["live"] == 1


def test_a_fresh_invoice_is_left_alone(
    resources: LocalResources, repo: InvoiceRepository, docs: DocumentStore, ledger_url: str
) -> None:
    invoice(repo, 1, with_xml=True, docs=docs)
    assert sweep(resources, ledger_url, CREATED + timedelta(minutes=5))["examined"] == 0


def test_an_invoice_whose_xml_was_never_stored_is_failed_and_recorded(
    resources: LocalResources,
    repo: InvoiceRepository,
    docs: DocumentStore,
    ledger: Ledger,
    ledger_url: str,
    aws: boto3.session.Session,
) -> None:
    invoice_id = invoice(repo, 1, with_xml=False, docs=docs)
    summary = sweep(resources, ledger_url, LATER)
    assert summary["failedIncomplete"] == 1 and summary["redriven"] == 0
    record = repo.get(invoice_id)
    assert record is not None and record.status is InvoiceStatus.FAILED
    assert record.error is not None and record.error.code == "EMIT_INCOMPLETE"
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.FAILED
    assert messages(aws, resources.requests_queue_url) == []


@pytest.mark.parametrize("code", ["EMIT_INCOMPLETE", "ORCHESTRATION_FAILED"])
def test_invoices_failed_without_ledger_access_get_their_ledger_row(
    resources: LocalResources,
    repo: InvoiceRepository,
    docs: DocumentStore,
    ledger: Ledger,
    ledger_url: str,
    aws: boto3.session.Session,
    code: str,
) -> None:
    """Defect: invoices made FAILED by EmitFn (EMIT_INCOMPLETE) or by the state machine's Catch
    (ORCHESTRATION_FAILED) never reached the ledger: DynamoDB and the ledger disagreed."""
    invoice_id = invoice(repo, 1, with_xml=True, docs=docs)
    assert repo.mark_failed(
        invoice_id,
        processed_at=CREATED,
        error=FailureReason(code, "not queued"),
        guard=FailGuard.never_sent(),
        ledger_follows=False,
    )
    assert ledger.get(invoice_id) is None
    assert sweep(resources, ledger_url, LATER)["recorded"] == 1
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.FAILED and row.error_code == code
    item = aws.client("dynamodb").get_item(
        TableName=resources.invoices_table, Key={"invoiceId": {"S": invoice_id}}
    )["Item"]
    assert PENDING_SHARD not in item  # recorded: the sweeper forgets it
    assert sweep(resources, ledger_url, LATER)["examined"] == 0


def test_an_invoice_under_a_running_lease_is_live_and_an_old_one_counts_as_stuck(
    resources: LocalResources,
    repo: InvoiceRepository,
    docs: DocumentStore,
    ledger_url: str,
    aws: boto3.session.Session,
) -> None:
    invoice_id = invoice(repo, 1, with_xml=True, docs=docs)
    much_later = CREATED + timedelta(hours=2)
    assert repo.mark_processing(
        invoice_id,
        now=much_later,
        lease_until=much_later + timedelta(minutes=2),
        owner="worker",
    )
    summary = sweep(resources, ledger_url, much_later + timedelta(seconds=30))
    assert summary["live"] == 1 and summary["redriven"] == 0
    assert summary["stuck"] == 1  # older than an hour and not final: the alarm's count
    assert messages(aws, resources.requests_queue_url) == []


def test_final_invoices_recorded_by_the_worker_leave_the_index(
    resources: LocalResources, repo: InvoiceRepository, docs: DocumentStore, ledger_url: str
) -> None:
    invoice_id = invoice(repo, 1, with_xml=True, docs=docs)
    assert repo.mark_issued(
        invoice_id,
        processed_at=CREATED,
        provider_protocol=None,
        nfse_number="1",
        verification_code="X",
        signed_key=None,
        nfse_key=None,
    )
    assert sweep(resources, ledger_url, LATER)["examined"] == 0
