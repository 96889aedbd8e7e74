"""Integration fixtures for the issuance side: simulator, certificates, a PostgreSQL ledger,
the worker in a thread; and small helpers the tests import."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from adapters_service.consumer import Consumer
from adapters_service.worker import build_consumer
from nfse_core.config import ProcessorSettings, WorkerSettings
from nfse_core.domain.ids import new_invoice_id
from nfse_core.domain.invoice import InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.store.aws import AwsClients
from nfse_core.store.documents import DocumentStore, xml_key
from nfse_core.store.invoices import InvoiceRepository
from nfse_core.store.ledger import Ledger
from nfse_core.store.migrate import migrate
from nfse_core.store.sql_executors import SqlAlchemyExecutor
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_local.certs import write_a1_certificate
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.samples import TENANTS, invoice_body
from nfse_local.simulator import ProviderSimulator
from tests.integration.data_api_router import scratch_database, sqlalchemy_url

CERT_PASSWORD = "test-only-password"  # generated per test run, never a real secret


@pytest.fixture(scope="session")
def ledger_url() -> Iterator[str]:
    """A scratch PostgreSQL database with the ledger migrated, on the suite's server (the
    configured one, else an embedded one: nfse_local/pg.py)."""
    with scratch_database(prefix="issuance") as conninfo:
        url = sqlalchemy_url(conninfo)
        executor = SqlAlchemyExecutor.from_url(url)
        migrate(executor)
        executor.engine.dispose()
        yield url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    executor = SqlAlchemyExecutor.from_url(ledger_url)
    executor.execute("DELETE FROM nfse.invoices")
    yield Ledger(executor)
    executor.engine.dispose()


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    for tenant in TENANTS:
        for cnpj in tenant.cnpjs:
            write_a1_certificate(directory, cnpj, CERT_PASSWORD)
    return directory


@pytest.fixture
def simulator() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as sim:
        yield sim


@pytest.fixture
def issuance_env(
    resources: LocalResources,
    simulator: ProviderSimulator,
    cert_dir: Path,
    ledger: Ledger,
    ledger_url: str,
) -> dict[str, str]:
    del ledger  # requested for its clean table
    return {
        **resources.worker_env(),
        **{k: v for k, v in resources.processor_env().items() if k == "DLQ_URL"},
        "PROVIDER_ENDPOINT_OVERRIDE": simulator.url,
        "CERT_SOURCE": "file",
        "CERT_DIR": str(cert_dir),
        "DATABASE_URL": ledger_url,
        "WORKER_WAIT_SECONDS": "1",
        "WORKER_BACKOFF_BASE_SECONDS": "0.5",
        "VISIBILITY_TIMEOUT": "30",
        "WORKER_CONCURRENCY": "4",
        "WORKER_HEARTBEAT_FILE": "",
        # The task's /scratch volume (TMPDIR) is this machine's temporary directory here.
        "TMPDIR": tempfile.gettempdir(),
    }


class WorkerThread:
    """The real consumer, in a thread of the test process (moto is in-process)."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._thread = threading.Thread(target=consumer.run, daemon=True)

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "worker did not stop"


@contextmanager
def running_worker(env: dict[str, str], **overrides: str) -> Iterator[WorkerThread]:
    settings = WorkerSettings.from_env({**env, **overrides})
    with WorkerThread(build_consumer(settings, AwsClients())) as worker:
        yield worker


def processor_settings(env: dict[str, str]) -> ProcessorSettings:
    return ProcessorSettings.from_env(env)


def emit(invoker: Invoker, **overrides: Any) -> str:
    event: dict[str, Any] = json.loads(
        (Path(__file__).resolve().parents[2] / "events/emit/valid.json").read_text()
    )
    event["headers"].pop("Idempotency-Key", None)
    event["body"] = json.dumps(invoice_body(**overrides))
    response = invoker.invoke("emit", event)
    assert response["statusCode"] == 201, response
    invoice_id: str = json.loads(response["body"])["invoiceId"]
    return invoice_id


def status_of(aws: boto3.session.Session, table: str, invoice_id: str) -> dict[str, Any]:
    item: dict[str, Any] = aws.client("dynamodb").get_item(
        TableName=table, Key={"invoiceId": {"S": invoice_id}}, ConsistentRead=True
    )["Item"]
    return item


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def queue_depth(aws: boto3.session.Session, url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def store_emitted_invoice(s3: Any, dynamodb: Any, resources: LocalResources, cnpj: str) -> str:
    """An EMITTED invoice and its RPS XML, written as EmitFn writes them (no queue message);
    the clients are the caller's, so a test chooses whose permissions write them."""
    now = datetime.now(UTC)
    invoice_id = new_invoice_id(now)
    request = parse_invoice_request(invoice_body(cnpj), today=now.date())
    rps = RpsIdentity(numero=1, serie="1")
    document = build_gerar_nfse_envio(request, rps, invoice_id, emitted_on=now.date())
    DocumentStore(s3, resources.docs_bucket).put_xml(xml_key(invoice_id), to_bytes(document))
    InvoiceRepository(dynamodb, resources.invoices_table).put_emitted(
        InvoiceRecord(
            invoice_id=invoice_id,
            tenant=next(t.tenant_id for t in TENANTS if cnpj in t.cnpjs),
            status=InvoiceStatus.EMITTED,
            created_at=now,
            total=request.total,
            cnpj=cnpj,
            municipio=request.municipio,
            rps=rps,
            xml_key=xml_key(invoice_id),
            inscricao_municipal=request.inscricao_municipal,
        )
    )
    return invoice_id
