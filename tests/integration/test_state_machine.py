"""The real emission ASL (statemachine/emission.asl.json) runs in moto's Step Functions.

Gaps of moto (5.2.5) met here, none of which the ASL depends on:
- Executions of an EXPRESS machine can be described and polled; in AWS, DescribeExecution does
  not serve Express executions (their record is the CloudWatch log group).
- `$$.State.EnteredTime` comes as `2026-01-01T12:00:00.123456+00:00`; AWS writes
  `2026-01-01T12:00:00.123Z`. Both are ISO-8601 UTC, which is all processedAt promises.
- A send to a missing queue fails as `SQS.SdkClientException`; AWS names the SQS error
  (`SQS.QueueDoesNotExistException`...). The Catch takes States.ALL, so the name does not matter;
  it only shows in error.message.
- Logging and tracing configuration of the machine are not applied locally.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nfse_local.resources import LocalResources, create_resources
from tests.integration.emission_input import CONTRACT_INPUT, INVOICE_ID

pytestmark = pytest.mark.integration

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def local(session: boto3.session.Session) -> LocalResources:
    return create_resources(session, template_path=TEMPLATE_PATH)


def run(session: boto3.session.Session, local: LocalResources, payload: dict[str, Any]) -> Any:
    """Start an execution and wait for it: moto runs executions on a thread of their own."""
    sfn = session.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=local.state_machine_arn, input=json.dumps(payload))[
        "executionArn"
    ]
    # The sendMessage Retry (1 s, x2, 3 attempts, full jitter) waits up to 7 s before the Catch.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.1)
    raise AssertionError(f"execution {arn} still running")


def put_invoice(session: boto3.session.Session, local: LocalResources, status: str) -> None:
    session.client("dynamodb").put_item(
        TableName=local.invoices_table,
        Item={
            "invoiceId": {"S": INVOICE_ID},
            "tenant": {"S": "acme"},
            "status": {"S": status},
            "createdAt": {"S": "2026-11-29T10:00:00+00:00"},
            "xmlKey": {"S": f"xml/{INVOICE_ID}.xml"},
        },
    )


def get_invoice(session: boto3.session.Session, local: LocalResources) -> dict[str, Any] | None:
    answer = session.client("dynamodb").get_item(
        TableName=local.invoices_table, Key={"invoiceId": {"S": INVOICE_ID}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = answer.get("Item")
    return item


def break_the_queue(session: boto3.session.Session, local: LocalResources) -> None:
    # The deployed definition points at RequestsQueue; without it, every send fails.
    session.client("sqs").delete_queue(QueueUrl=local.requests_queue_url)


def test_input_is_sent_to_the_requests_queue_as_is(
    session: boto3.session.Session, local: LocalResources
) -> None:
    put_invoice(session, local, "EMITTED")
    execution = run(session, local, CONTRACT_INPUT)
    assert execution["status"] == "SUCCEEDED", execution
    messages = session.client("sqs").receive_message(
        QueueUrl=local.requests_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )["Messages"]
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == CONTRACT_INPUT
    # The happy path leaves the invoice to the worker.
    item = get_invoice(session, local)
    assert item is not None
    assert item["status"]["S"] == "EMITTED"
    assert "error" not in item


def test_a_send_that_keeps_failing_marks_the_invoice_failed(
    session: boto3.session.Session, local: LocalResources
) -> None:
    put_invoice(session, local, "EMITTED")
    break_the_queue(session, local)
    started = datetime.now(UTC)
    execution = run(session, local, CONTRACT_INPUT)
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "ORCHESTRATION_FAILED"
    item = get_invoice(session, local)
    assert item is not None
    assert item["status"]["S"] == "FAILED"
    error = item["error"]["M"]
    assert error["code"]["S"] == "ORCHESTRATION_FAILED"
    assert error["message"]["S"]
    processed_at = datetime.fromisoformat(item["processedAt"]["S"])
    assert processed_at.utcoffset() == UTC.utcoffset(None)
    assert processed_at >= started.replace(microsecond=0)
    # Nothing else of the item changed.
    assert item["tenant"]["S"] == "acme"
    assert item["createdAt"]["S"] == "2026-11-29T10:00:00+00:00"


def test_an_invoice_that_moved_on_is_not_touched(
    session: boto3.session.Session, local: LocalResources
) -> None:
    put_invoice(session, local, "ISSUED")
    break_the_queue(session, local)
    execution = run(session, local, CONTRACT_INPUT)
    # The conditional update fails (status is not EMITTED): the run ends without error.
    assert execution["status"] == "SUCCEEDED", execution
    item = get_invoice(session, local)
    assert item is not None
    assert item["status"]["S"] == "ISSUED"
    assert "error" not in item
    assert "processedAt" not in item


def test_an_unknown_invoice_is_not_created(
    session: boto3.session.Session, local: LocalResources
) -> None:
    break_the_queue(session, local)
    execution = run(session, local, CONTRACT_INPUT)
    assert execution["status"] == "SUCCEEDED", execution
    assert get_invoice(session, local) is None
