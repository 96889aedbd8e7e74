"""The worker and ProcessorFn against moto (queues with redrive from template.yaml), the provider
simulator on loopback, and the ledger on real PostgreSQL."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import boto3
import pytest
from lxml import etree

from nfse_core.bootstrap import build_issuance
from nfse_core.domain.invoice import utc_now
from nfse_core.domain.status import InvoiceStatus
from nfse_core.services.reprocess import DlqReprocessor, S3Parking
from nfse_core.store.aws import AwsClients
from nfse_core.store.ledger import Ledger
from nfse_core.xml.schema import schema_errors
from nfse_core.xml.signing import verify_signature
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.simulator import ProviderSimulator
from tests.integration.conftest import (
    emit,
    processor_settings,
    queue_depth,
    running_worker,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.integration


def final(aws: boto3.session.Session, table: str, invoice_id: str) -> bool:
    return status_of(aws, table, invoice_id)["status"]["S"] in {"ISSUED", "FAILED"}


def s3_text(aws: boto3.session.Session, bucket: str, key: str) -> bytes:
    body: bytes = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_success_path_issues_records_and_deletes(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    invoice_id = emit(invoker)
    with running_worker(issuance_env):
        wait_for(lambda: final(aws, resources.invoices_table, invoice_id), what="ISSUED")
    item = status_of(aws, resources.invoices_table, invoice_id)
    assert item["status"]["S"] == "ISSUED"
    assert item["nfseNumber"]["S"] and item["verificationCode"]["S"]
    assert item["processedAt"]["S"] >= item["createdAt"]["S"]

    signed = etree.fromstring(s3_text(aws, resources.docs_bucket, item["signedKey"]["S"]))
    assert verify_signature(signed) == [f"rps{invoice_id}"]
    assert schema_errors(signed) == []
    answer = etree.fromstring(s3_text(aws, resources.docs_bucket, f"nfse/{invoice_id}.xml"))
    assert answer.tag.endswith("CompNfse")

    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.ISSUED
    assert row.nfse_number == item["nfseNumber"]["S"] and row.total == Decimal("1500.00")
    assert queue_depth(aws, resources.requests_queue_url) == 0
    assert simulator.stats()["issued"] == 1


def test_temporary_errors_then_success(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    simulator.set_faults(error_rate=1.0)
    invoice_id = emit(invoker)
    with running_worker(issuance_env, WORKER_ATTEMPTS_PER_DELIVERY="1"):
        wait_for(lambda: sum(simulator.stats()["faults_injected"].values()) >= 2, what="faults")
        assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "PROCESSING"
        simulator.set_faults(error_rate=0.0)
        wait_for(lambda: final(aws, resources.invoices_table, invoice_id), what="ISSUED")
    assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "ISSUED"
    assert simulator.stats()["issued"] == 1
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.ISSUED


def test_permanent_rejection_fails_at_once(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    invoice_id = emit(invoker, discriminacao="Consultoria [sim:reject]")
    with running_worker(issuance_env):
        wait_for(lambda: final(aws, resources.invoices_table, invoice_id), what="FAILED")
    item = status_of(aws, resources.invoices_table, invoice_id)
    assert item["status"]["S"] == "FAILED"
    assert item["error"]["M"]["code"]["S"] == "PROVIDER_REJECTED"
    assert "E903" in item["error"]["M"]["message"]["S"]
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.FAILED and row.error_code
    assert queue_depth(aws, resources.requests_queue_url) == 0
    assert simulator.stats()["issued"] == 0


def test_lost_answer_redelivery_consults_and_issues_once(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    aws: boto3.session.Session,
) -> None:
    invoice_id = emit(invoker, discriminacao="Suporte tecnico [sim:lost]")
    # One try per delivery: the lost answer ends the first delivery; the second consults.
    with running_worker(issuance_env, WORKER_ATTEMPTS_PER_DELIVERY="1"):
        wait_for(lambda: final(aws, resources.invoices_table, invoice_id), what="ISSUED")
    assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "ISSUED"
    stats = simulator.stats()
    assert stats["issued"] == 1
    assert stats["requests_by_operation"].get("GerarNfse") == 1  # never sent twice
    assert stats["requests_by_operation"].get("ConsultarNfsePorRps", 0) >= 1


def test_repeated_failures_go_to_dlq_then_processor_marks_failed_and_deletes_the_message(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    invoice_id = emit(invoker, discriminacao="Manutencao [sim:temporary]")
    dlq = issuance_env["DLQ_URL"]
    # Short redelivery backoff: only the count of receives matters for the redrive.
    with running_worker(
        issuance_env, WORKER_ATTEMPTS_PER_DELIVERY="1", WORKER_BACKOFF_BASE_SECONDS="0.1"
    ):
        wait_for(lambda: queue_depth(aws, dlq) == 1, timeout=60, what="redrive to the DLQ")
    assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "PROCESSING"

    settings = processor_settings(issuance_env)
    issuance = build_issuance(settings, AwsClients())
    reprocessor = DlqReprocessor(
        sqs=aws.client("sqs"),
        dlq_url=dlq,
        service=issuance.service,
        parking=S3Parking(issuance.documents, utc_now),
        per_message_seconds=issuance.max_lease_seconds,
    )
    summary = reprocessor.run(10, lambda: 300.0)
    assert summary.as_dict() == {
        "received": 1,
        "issued": 0,
        "failed": 1,
        "alreadyFinal": 0,
        "undecided": 0,
        "parked": 0,
        "crashed": 0,
        "handedBack": 0,
        "deleted": 1,
    }
    item = status_of(aws, resources.invoices_table, invoice_id)
    assert item["status"]["S"] == "FAILED"
    assert item["error"]["M"]["code"]["S"] == "PROVIDER_UNAVAILABLE"
    # FAILED is final and recorded with its reason: the message leaves the DLQ, so the DLQ
    # alarm clears (defect: FAILED messages stayed for ever and the alarm never cleared).
    assert queue_depth(aws, dlq) == 0
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.FAILED
    assert simulator.stats()["issued"] == 0


def test_processor_issues_what_the_dlq_holds_once_the_provider_is_back(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    simulator.set_faults(error_rate=1.0)
    invoice_id = emit(invoker)
    dlq = issuance_env["DLQ_URL"]
    # Short redelivery backoff: only the count of receives matters for the redrive.
    with running_worker(
        issuance_env, WORKER_ATTEMPTS_PER_DELIVERY="1", WORKER_BACKOFF_BASE_SECONDS="0.1"
    ):
        wait_for(lambda: queue_depth(aws, dlq) == 1, timeout=60, what="redrive to the DLQ")
    simulator.set_faults(error_rate=0.0)

    from functions.processor import app  # noqa: PLC0415 - not at collection: reads its env on import

    app.reprocessor.cache_clear()
    os.environ.update(issuance_env)
    try:
        summary = app.handler({"maxMessages": 5}, _Context())
    finally:
        app.reprocessor.cache_clear()
    assert summary["issued"] == 1 and summary["deleted"] == 1
    assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "ISSUED"
    assert queue_depth(aws, dlq) == 0
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.ISSUED
    assert simulator.stats()["issued"] == 1


class _Context:
    function_name = "processor"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:processor"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        # Room for one worst-case message of the simulator's entry (dlq_message_seconds: 61 s).
        return 120_000


def test_message_body_shape_is_the_contract(
    invoker: Invoker, resources: LocalResources, aws: boto3.session.Session
) -> None:
    invoice_id = emit(invoker)
    sqs = aws.client("sqs")
    messages: list[dict[str, Any]] = []
    wait_for(
        lambda: bool(
            messages.extend(
                sqs.receive_message(QueueUrl=resources.requests_queue_url).get("Messages", [])
            )
            or messages
        ),
        what="message",
    )
    body = json.loads(messages[0]["Body"])
    assert set(body) == {"invoiceId", "tenant", "cnpj", "municipio", "xmlKey", "rps"}
    assert body["invoiceId"] == invoice_id
