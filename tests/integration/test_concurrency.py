"""Issue #5, concurrency: one Idempotency-Key sent by 20 Lambda instances at once is one
invoice; two workers holding the same SQS message (its visibility expired while the first was
slow) make one NFS-e."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from nfse_core.bootstrap import build_emit
from nfse_core.config import ApiSettings
from nfse_core.domain.errors import IdempotencyConflict
from nfse_core.domain.status import InvoiceStatus
from nfse_core.services.api import EmitApi
from nfse_core.store.ledger import Ledger
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.samples import invoice_body
from nfse_local.simulator import ProviderSimulator
from tests.integration.conftest import (
    emit,
    queue_depth,
    running_worker,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.integration

PARALLEL = 20


def _emit_all_at_once(
    stack_env: dict[str, str], body: dict[str, Any], key: str | None
) -> list[dict[str, Any] | IdempotencyConflict]:
    """PARALLEL threads, each its own EmitApi (as separate Lambda instances would be),
    released together by a barrier; each returns the 201 body or the 409 it got."""
    settings = ApiSettings.from_env(stack_env)
    apis = [build_emit(settings) for _ in range(PARALLEL)]
    barrier = threading.Barrier(PARALLEL)

    def call(api: EmitApi) -> dict[str, Any] | IdempotencyConflict:
        barrier.wait()
        try:
            return api.emit("acme", dict(body), key)
        except IdempotencyConflict as conflict:
            return conflict

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(call, apis))


def _items(aws: boto3.session.Session, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.client("dynamodb").scan(TableName=table)["Items"]
    return items


@pytest.mark.parametrize("via", ["header", "reference"])
def test_one_idempotency_key_sent_twenty_times_at_once_is_one_invoice(
    via: str, stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    if via == "header":
        body, key = invoice_body(total="321.00"), "same-key-20"
    else:  # no header: the body's reference is the key
        body, key = invoice_body(total="321.00", reference="ERP-REF-20"), None
    answers = _emit_all_at_once(stack_env, body, key)

    created = [a for a in answers if isinstance(a, dict)]
    conflicts = [a for a in answers if isinstance(a, IdempotencyConflict)]
    assert len(created) + len(conflicts) == PARALLEL
    assert created, "at least the first request must create the invoice"
    # Every 201 is the same invoice (a replay of the first answer)...
    assert {a["invoiceId"] for a in created} == {created[0]["invoiceId"]}
    assert all(a["status"] == "EMITTED" for a in created)
    # ...and every 409 says "in progress", never "different body".
    for conflict in conflicts:
        assert conflict.status == 409 and conflict.code == "IDEMPOTENCY_CONFLICT"
        assert "in progress" in conflict.message
    items = _items(aws, stack_env["INVOICES_TABLE"])
    assert [i["invoiceId"]["S"] for i in items] == [created[0]["invoiceId"]]
    assert items[0]["rps"]["M"]["numero"]["N"] == "1"  # one RPS number taken, not twenty


def test_the_same_key_with_different_bodies_at_once_makes_one_invoice(
    stack_env: dict[str, str], aws: boto3.session.Session
) -> None:
    settings = ApiSettings.from_env(stack_env)
    barrier = threading.Barrier(PARALLEL)

    def call(i: int) -> dict[str, Any] | IdempotencyConflict:
        api = build_emit(settings)
        barrier.wait()
        try:
            return api.emit("acme", invoice_body(total=f"{100 + i}.00"), "racing-bodies")
        except IdempotencyConflict as conflict:
            return conflict

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        answers = list(pool.map(call, range(PARALLEL)))
    created = [a for a in answers if isinstance(a, dict)]
    assert len(created) == 1  # only the winner's body; every other body is a 409
    items = _items(aws, stack_env["INVOICES_TABLE"])
    assert [i["invoiceId"]["S"] for i in items] == [created[0]["invoiceId"]]


def test_a_message_stays_invisible_while_its_handler_runs(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    aws: boto3.session.Session,
) -> None:
    """Defect: the template said the worker extends a message's visibility while it works on
    it; the consumer never did. A provider slower than the visibility timeout then let a second
    worker receive the message: it found the lease taken and counted one receive more towards
    the DLQ. The heartbeat keeps the message invisible (up to MAX_HANDLING_SECONDS)."""
    simulator.set_faults(latency=4.0)
    invoice_id = emit(invoker, discriminacao="Consultoria lenta")
    settings = {"VISIBILITY_TIMEOUT": "3", "WORKER_CONCURRENCY": "1"}
    table = resources.invoices_table
    with (
        running_worker(issuance_env, **settings) as first,
        running_worker(issuance_env, **settings) as second,
    ):
        wait_for(
            lambda: status_of(aws, table, invoice_id)["status"]["S"] == "ISSUED",
            timeout=60,
            what="ISSUED",
        )
        wait_for(
            lambda: queue_depth(aws, resources.requests_queue_url) == 0,
            timeout=60,
            what="the message deleted",
        )
    handled = sorted((first.consumer.processed, second.consumer.processed))
    assert handled == [0, 1], f"only one worker may see the message: {handled}"
    assert first.consumer.extensions + second.consumer.extensions >= 1
    assert simulator.stats()["requests_by_operation"] == {"GerarNfse": 1}


def test_two_workers_holding_the_same_invoice_issue_one_nfse(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    # Two copies of the invoice's message (Express runs at least once; the sweeper re-drives):
    # each worker takes one while the provider takes 3 s, so both hold the invoice at once.
    # One slot each: a busy worker cannot take the other copy itself.
    simulator.set_faults(latency=3.0)
    invoice_id = emit(invoker, discriminacao="Consultoria lenta")
    sqs = aws.client("sqs")
    wait_for(lambda: queue_depth(aws, resources.requests_queue_url) == 1, what="the first message")
    body = json.dumps({"invoiceId": invoice_id, "tenant": "acme", "cnpj": "11222333000181"})
    sqs.send_message(QueueUrl=resources.requests_queue_url, MessageBody=body)
    settings = {"WORKER_CONCURRENCY": "1", "WORKER_BACKOFF_BASE_SECONDS": "0.5"}
    table = resources.invoices_table
    with (
        running_worker(issuance_env, **settings) as first,
        running_worker(issuance_env, **settings) as second,
    ):
        wait_for(
            lambda: status_of(aws, table, invoice_id)["status"]["S"] == "ISSUED",
            timeout=60,
            what="ISSUED",
        )
        wait_for(
            lambda: queue_depth(aws, resources.requests_queue_url) == 0,
            timeout=60,
            what="both messages deleted",
        )
    # Leaving the block stops both consumers after their in-flight work.
    handled = (first.consumer.processed, second.consumer.processed)
    assert all(count >= 1 for count in handled), f"both workers must handle it: {handled}"

    stats = simulator.stats()
    assert stats["issued"] == 1
    assert list(stats["issuances_per_rps"].values()) == [1]
    # The second holder found the lease taken, sent nothing, and later found the NFS-e.
    assert stats["requests_by_operation"].get("GerarNfse", 0) == 1 + stats["duplicates_refused"]

    item = status_of(aws, table, invoice_id)
    rps = item["rps"]["M"]
    stored = simulator.issued(
        item["cnpj"]["S"], int(rps["numero"]["N"]), rps["serie"]["S"], int(rps["tipo"]["N"])
    )
    assert stored is not None
    assert item["status"]["S"] == "ISSUED"
    assert item["nfseNumber"]["S"] == str(stored.numero)
    row = ledger.get(invoice_id)
    assert row is not None and row.status is InvoiceStatus.ISSUED
    assert row.nfse_number == str(stored.numero)
