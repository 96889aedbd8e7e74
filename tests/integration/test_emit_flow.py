"""POST -> EMITTED item, valid XML in S3, message in RequestsQueue: the real ASL runs in moto."""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from lxml import etree

from nfse_core.bootstrap import build_emit
from nfse_core.config import ApiSettings
from nfse_core.xml.schema import NFSE_NS, schema_errors
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.samples import invoice_body
from tests.conftest import response_json

pytestmark = pytest.mark.integration
EVENTS = Path(__file__).resolve().parents[2] / "events"


def emit_event(
    body: dict[str, Any], key: str | None = None, tenant: str = "acme"
) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "emit" / "valid.json").read_text())
    event = copy.deepcopy(event)
    event["body"] = json.dumps(body)
    event["headers"].pop("Idempotency-Key", None)
    if key:
        event["headers"]["Idempotency-Key"] = key
    event["requestContext"]["authorizer"]["claims"]["custom:tenant_id"] = tenant
    return event


def get_event(invoice_id: str, tenant: str = "acme") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "get" / "existing.json").read_text())
    text = json.dumps(event).replace("{lastInvoiceId}", invoice_id)
    event = json.loads(text)
    event["requestContext"]["authorizer"]["claims"]["custom:tenant_id"] = tenant
    return event


def receive_all(sqs: Any, url: str, expected: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Executions run asynchronously in moto: poll the queue until the messages arrive."""
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < expected and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in answer.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(bodies) < expected:
            time.sleep(0.2)
    return bodies


def test_emit_writes_item_xml_and_queues_message(
    invoker: Invoker,
    stack_env: dict[str, str],
    resources: LocalResources,
    aws: boto3.session.Session,
) -> None:
    response = invoker.invoke("emit", emit_event(invoice_body(), key="flow-1"))
    assert response["statusCode"] == 201, response
    body = response_json(response)
    invoice_id = body["invoiceId"]
    assert body == {"invoiceId": invoice_id, "status": "EMITTED", "xmlKey": f"xml/{invoice_id}.xml"}
    assert response["multiValueHeaders"]["Location"] == [f"/invoices/{invoice_id}"]

    item = aws.client("dynamodb").get_item(
        TableName=stack_env["INVOICES_TABLE"], Key={"invoiceId": {"S": invoice_id}}
    )["Item"]
    assert item["status"]["S"] == "EMITTED"
    assert item["tenant"]["S"] == "acme"
    assert item["total"]["N"] == "1500.00" or item["total"]["N"] == "1500"
    assert item["rps"]["M"]["numero"]["N"] == "1"

    s3_object = aws.client("s3").get_object(Bucket=stack_env["DOCS_BUCKET"], Key=body["xmlKey"])
    document = etree.fromstring(s3_object["Body"].read())
    assert schema_errors(document) == []
    assert s3_object.get("ServerSideEncryption") in {"AES256", "aws:kms"}
    inf = document.find(f".//{{{NFSE_NS}}}InfDeclaracaoPrestacaoServico")
    assert inf is not None and invoice_id in inf.get("Id", "")

    messages = receive_all(aws.client("sqs"), resources.requests_queue_url, expected=1)
    assert len(messages) == 1
    assert messages[0]["invoiceId"] == invoice_id
    assert messages[0]["xmlKey"] == body["xmlKey"]
    assert messages[0]["rps"] == {"numero": 1, "serie": "1", "tipo": 1}


def test_get_returns_status_and_hides_other_tenants(invoker: Invoker) -> None:
    created = response_json(invoker.invoke("emit", emit_event(invoice_body())))
    own = invoker.invoke("get", get_event(created["invoiceId"]))
    assert own["statusCode"] == 200
    view = response_json(own)
    assert view["status"] == "EMITTED" and view["total"] == "1500.00"
    assert view["cnpj"] == "11222333000181" and view["municipio"] == "3550308"
    assert view["processedAt"] is None and view["error"] is None

    foreign = invoker.invoke("get", get_event(created["invoiceId"], tenant="globex"))
    unknown = invoker.invoke("get", get_event("01JDQ0000000000000000000ZZ"))
    garbage = invoker.invoke("get", get_event("not-an-id"))
    assert foreign["statusCode"] == unknown["statusCode"] == garbage["statusCode"] == 404
    assert response_json(foreign) == response_json(unknown)


def test_idempotent_replay_and_conflict(
    invoker: Invoker, stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    first = invoker.invoke("emit", emit_event(invoice_body(), key="same-key"))
    again = invoker.invoke("emit", emit_event(invoice_body(), key="same-key"))
    assert first["statusCode"] == again["statusCode"] == 201
    assert response_json(first) == response_json(again)

    changed = invoker.invoke("emit", emit_event(invoice_body(total="10.00"), key="same-key"))
    assert changed["statusCode"] == 409
    assert response_json(changed)["error"]["code"] == "IDEMPOTENCY_CONFLICT"

    # The body's reference works as the key too, and keys are per tenant.
    by_ref = invoker.invoke("emit", emit_event(invoice_body(reference="PED-7")))
    by_ref_again = invoker.invoke("emit", emit_event(invoice_body(reference="PED-7")))
    assert response_json(by_ref) == response_json(by_ref_again)
    other_tenant = invoker.invoke(
        "emit", emit_event(invoice_body("11444777000161"), key="same-key", tenant="globex")
    )
    assert other_tenant["statusCode"] == 201
    assert response_json(other_tenant)["invoiceId"] != response_json(first)["invoiceId"]

    items = aws.client("dynamodb").scan(TableName=stack_env["INVOICES_TABLE"])["Items"]
    assert len(items) == 3


def test_rejected_requests_write_nothing(
    invoker: Invoker, stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    bad = invoice_body(cnpj="11222333000182", aliquota="9.00")
    assert invoker.invoke("emit", emit_event(bad))["statusCode"] == 400
    assert invoker.invoke("emit", emit_event(invoice_body("11444777000161")))["statusCode"] == 403
    ddb = aws.client("dynamodb")
    assert ddb.scan(TableName=stack_env["INVOICES_TABLE"])["Items"] == []
    assert ddb.scan(TableName=stack_env["RPS_COUNTERS_TABLE"])["Items"] == []
    assert aws.client("s3").list_objects_v2(Bucket=stack_env["DOCS_BUCKET"]).get("KeyCount") == 0


def test_without_a_key_an_orchestration_failure_marks_the_invoice_failed_not_lost(
    stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    broken = dict(stack_env, STATE_MACHINE_ARN=stack_env["STATE_MACHINE_ARN"] + "-missing")
    response = Invoker(broken).invoke("emit", emit_event(invoice_body()))
    assert response["statusCode"] == 503
    assert response_json(response)["error"]["code"] == "SERVICE_UNAVAILABLE"
    items = aws.client("dynamodb").scan(TableName=stack_env["INVOICES_TABLE"])["Items"]
    assert len(items) == 1
    assert items[0]["status"]["S"] == "FAILED"
    assert items[0]["error"]["M"]["code"]["S"] == "EMIT_INCOMPLETE"
    assert "pendingShard" in items[0]  # the sweeper writes its ledger row (EmitFn has no access)


def test_with_a_key_an_orchestration_failure_keeps_the_invoice_for_the_retry(
    stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    """Defect: the failure marked the keyed invoice FAILED and freed its key, so the retry made a
    second invoice with a new RPS. Now the retry completes the first one."""
    broken = dict(stack_env, STATE_MACHINE_ARN=stack_env["STATE_MACHINE_ARN"] + "-missing")
    response = Invoker(broken).invoke("emit", emit_event(invoice_body(), key="broken-1"))
    assert response["statusCode"] == 503
    (item,) = aws.client("dynamodb").scan(TableName=stack_env["INVOICES_TABLE"])["Items"]
    assert item["status"]["S"] == "EMITTED"
    invoice_id = item["invoiceId"]["S"]
    assert invoice_id in response_json(response)["error"]["message"]
    # Once the dependency is back, the retry with the same key answers the same invoice.
    retry = Invoker(stack_env).invoke("emit", emit_event(invoice_body(), key="broken-1"))
    assert retry["statusCode"] == 201
    assert response_json(retry)["invoiceId"] == invoice_id
    items = aws.client("dynamodb").scan(TableName=stack_env["INVOICES_TABLE"])["Items"]
    assert [i["invoiceId"]["S"] for i in items] == [invoice_id]
    counters = aws.client("dynamodb").scan(TableName=stack_env["RPS_COUNTERS_TABLE"])["Items"]
    assert [c["lastNumber"]["N"] for c in counters] == ["1"]  # no second RPS number


def test_concurrent_emits_never_reuse_an_rps_number(
    stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    # Each Lambda instance handles one event at a time; concurrency is between instances, so the
    # threads share the stores (DynamoDB, S3) but each runs its own service, as instances would.
    settings = ApiSettings.from_env(stack_env)

    def emit(i: int) -> str:
        api = build_emit(settings)
        result = api.emit("acme", invoice_body(total=f"{i + 1}.00"), None)
        return str(result["status"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(emit, range(24)))
    assert statuses == ["EMITTED"] * 24
    items = aws.client("dynamodb").scan(TableName=stack_env["INVOICES_TABLE"])["Items"]
    numbers = sorted(int(i["rps"]["M"]["numero"]["N"]) for i in items)
    assert numbers == list(range(1, 25))


def test_a_crash_answers_500_with_the_error_body(
    invoker: Invoker, stack_env: dict[str, str]
) -> None:
    created = response_json(invoker.invoke("emit", emit_event(invoice_body())))
    broken = Invoker(dict(stack_env, INVOICES_TABLE="no-such-table"))
    response = broken.invoke("get", get_event(created["invoiceId"]))
    assert response["statusCode"] == 500
    error = response_json(response)["error"]
    assert error["code"] == "INTERNAL_ERROR" and error["details"] == []
    assert "no-such-table" not in response["body"]  # internals are logged, not answered


def test_the_computed_amounts_are_stored_and_shown_by_get(
    invoker: Invoker, stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    body = invoice_body(
        total="2000.00",
        aliquota="3.00",
        issRetido=True,
        optanteSimplesNacional=True,
        regimeEspecialTributacao=6,
        valorDeducoes="500.00",
        descontoIncondicionado="100.00",
        retencoes={"ir": "30.00", "csll": "20.00"},
    )
    created = invoker.invoke("emit", emit_event(body, key="amounts-1"))
    assert created["statusCode"] == 201, created
    invoice_id = response_json(created)["invoiceId"]
    view = response_json(invoker.invoke("get", get_event(invoice_id)))
    valores = view["valores"]
    assert valores["baseCalculo"] == "1400.00"  # 2000 - 500 - 100
    assert valores["valorIss"] == valores["valorIssRetido"] == "42.00"  # 1400 x 3%
    assert valores["valorLiquido"] == "1808.00"  # 2000 - 30 - 20 - 42 - 100
    assert valores["retencoes"]["ir"] == "30.00" and valores["issRetido"] is True

    s3_object = aws.client("s3").get_object(Bucket=stack_env["DOCS_BUCKET"], Key=view["xmlKey"])
    document = etree.fromstring(s3_object["Body"].read())
    assert schema_errors(document) == []
    ns = {"n": NFSE_NS}
    assert document.findtext(".//n:OptanteSimplesNacional", namespaces=ns) == "1"
    assert document.findtext(".//n:RegimeEspecialTributacao", namespaces=ns) == "6"
    assert document.findtext(".//n:Valores/n:ValorIss", namespaces=ns) == "42.00"


def test_an_item_the_provider_lacks_is_a_422_that_writes_nothing(
    invoker: Invoker, stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    answer = invoker.invoke("emit", emit_event(invoice_body(itemListaServico="17.25")))
    assert answer["statusCode"] == 422
    error = response_json(answer)["error"]
    assert error["code"] == "NOT_SUPPORTED_BY_PROVIDER"
    assert error["details"][0]["field"] == "itemListaServico"
    assert "17.25" in error["details"][0]["message"]
    ddb = aws.client("dynamodb")
    assert ddb.scan(TableName=stack_env["INVOICES_TABLE"])["Items"] == []
    assert ddb.scan(TableName=stack_env["RPS_COUNTERS_TABLE"])["Items"] == []
