"""ProcessorFn's DLQ run against moto: each message on its own, poison parked, final ones
deleted, and no run outlives its time."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import boto3
import pytest

from nfse_core.bootstrap import build_issuance
from nfse_core.config import ProcessorSettings
from nfse_core.domain.invoice import utc_now
from nfse_core.services.reprocess import DlqReprocessor, S3Parking
from nfse_core.store.aws import AwsClients
from nfse_core.store.ledger import Ledger
from nfse_local.cfn import load_template
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.simulator import FaultConfig, ProviderSimulator
from tests.integration.conftest import emit, queue_depth, status_of

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def reprocessor(env: dict[str, str]) -> DlqReprocessor:
    settings = ProcessorSettings.from_env(env)
    issuance = build_issuance(settings, AwsClients())
    return DlqReprocessor(
        sqs=AwsClients().sqs,
        dlq_url=settings.dlq_url,
        service=issuance.service,
        parking=S3Parking(issuance.documents, utc_now),
        per_message_seconds=issuance.max_lease_seconds,
        hold_seconds=settings.hold_seconds,
    )


def to_dlq(aws: boto3.session.Session, url: str, body: str) -> None:
    aws.client("sqs").send_message(QueueUrl=url, MessageBody=body)


def test_one_bad_message_does_not_stop_the_run_and_poison_is_parked(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    """Defect: one exception stopped the run and hid up to ten messages for 900 s, and
    messages naming no invoice stayed in the DLQ for ever (its alarm never cleared)."""
    dlq = issuance_env["DLQ_URL"]
    good = emit(invoker, discriminacao="Servico [sim:reject]")
    # An invoice whose XML is gone: processing it raises (the read fails).
    broken = emit(invoker)
    aws.client("s3").delete_object(Bucket=resources.docs_bucket, Key=f"xml/{broken}.xml")
    for body in ("not json at all", json.dumps({"invoiceId": broken})):
        to_dlq(aws, dlq, body)
    to_dlq(aws, dlq, json.dumps({"invoiceId": "01JDQ0000000000000000000ZZ"}))  # unknown
    to_dlq(aws, dlq, json.dumps({"invoiceId": good}))
    summary = reprocessor(issuance_env).run(10, lambda: 300.0).as_dict()
    assert summary["received"] == 4
    assert summary["crashed"] == 1  # the broken one, left for the next run
    assert summary["parked"] == 2  # no invoiceId; an unknown invoice
    assert summary["failed"] == 1  # the rejected one, processed despite the crash before it
    assert summary["deleted"] == 3
    assert status_of(aws, resources.invoices_table, good)["status"]["S"] == "FAILED"
    parked = aws.client("s3").list_objects_v2(Bucket=resources.docs_bucket, Prefix="parked/")
    reasons = sorted(
        json.loads(
            aws.client("s3").get_object(Bucket=resources.docs_bucket, Key=o["Key"])["Body"].read()
        )["reason"]
        for o in parked["Contents"]
    )
    assert reasons == [
        "the message names no invoiceId",
        "unknown invoice 01JDQ0000000000000000000ZZ",
    ]
    # Only the crashed message is left, invisible until about the next scheduled run.
    assert queue_depth(aws, dlq) == 1


def test_a_run_stops_before_its_timeout_and_hands_back_what_it_did_not_start(
    invoker: Invoker,
    issuance_env: dict[str, str],
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    """Defect: a run could outlast its timeout with messages taken and hidden for 900 s."""
    dlq = issuance_env["DLQ_URL"]
    for _ in range(3):
        to_dlq(aws, dlq, json.dumps({"invoiceId": emit(invoker)}))
    worker = reprocessor(issuance_env)
    # Enough time for the receive, not for one more message (its lease plus the margin).
    summary = worker.run(10, lambda: 5.0).as_dict()
    assert summary["received"] == 0 and summary["deleted"] == 0
    answer = aws.client("sqs").get_queue_attributes(
        QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert int(answer["ApproximateNumberOfMessages"]) == 3  # all visible: nothing hidden


def test_the_schedules_are_on_by_default() -> None:
    """Defect: ProcessorFn's schedule was off by default, so nothing left the DLQ."""
    template = load_template(ROOT / "template.yaml")
    assert template["Parameters"]["ProcessorScheduleEnabled"]["Default"] == "true"
    sweep = template["Resources"]["SweeperFn"]["Properties"]["Events"]["Sweep"]["Properties"]
    assert sweep["State"] == "ENABLED"


def test_two_runs_at_once_neither_send_twice_nor_lose_a_message(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    """ProcessorFn has no reserved concurrency (a quota-10 account refuses it), so two runs
    can overlap: a scheduled one and a manual invoke. Each invoice has two messages in the DLQ
    (a redrive beside the original), the provider answers slowly, and two runs take the DLQ at
    once: each invoice is sent once, ends ISSUED, and every message is deleted or still there."""
    del ledger  # requested for its emptied table
    dlq = issuance_env["DLQ_URL"]
    invoices = [emit(invoker) for _ in range(4)]
    for invoice_id in invoices * 2:
        to_dlq(aws, dlq, json.dumps({"invoiceId": invoice_id}))
    with ProviderSimulator(faults=FaultConfig(latency=0.3)) as slow:
        env = issuance_env | {"PROVIDER_ENDPOINT_OVERRIDE": slow.url, "PROCESSOR_HOLD_SECONDS": "0"}
        runs = [reprocessor(env) for _ in range(2)]
        start = threading.Barrier(2)
        summaries: list[dict[str, int]] = []

        def run(worker: DlqReprocessor) -> None:
            start.wait()
            summaries.append(worker.run(20, lambda: 300.0).as_dict())

        threads = [threading.Thread(target=run, args=(worker,)) for worker in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        stats = slow.stats()
    assert len(summaries) == 2 and all(s["crashed"] == 0 for s in summaries)
    # Sent at most once each: one issuance per RPS, no duplicate ever reached the provider.
    assert sorted(stats["issuances_per_rps"].values()) == [1] * len(invoices)
    assert stats["duplicates_refused"] == 0
    assert stats["requests_by_operation"].get("GerarNfse", 0) == len(invoices)
    for invoice_id in invoices:
        assert status_of(aws, resources.invoices_table, invoice_id)["status"]["S"] == "ISSUED"
    # Nothing lost: every message was either deleted (its invoice final) or is still queued.
    deleted = sum(s["deleted"] for s in summaries)
    assert deleted + queue_depth(aws, dlq) == 2 * len(invoices)
    # A later run finds the invoices final and deletes what is left.
    queue_depth_before = queue_depth(aws, dlq)
    later = reprocessor(issuance_env | {"PROCESSOR_HOLD_SECONDS": "0"}).run(20, lambda: 300.0)
    assert later.deleted == queue_depth_before
    assert queue_depth(aws, dlq) == 0
