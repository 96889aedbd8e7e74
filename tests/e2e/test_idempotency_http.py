"""Issue #5: one Idempotency-Key sent 20 times at once over HTTP is one invoice.

The local gateway runs one invocation per function at a time (as one Lambda instance would),
so this checks the answers a client sees are consistent; the race between instances is
tested at the service level in tests/integration/test_concurrency.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from nfse_local.samples import invoice_body
from tests.e2e.conftest import ApiClient

pytestmark = pytest.mark.e2e

PARALLEL = 20
RETRIES = 5


def _post_together(api: ApiClient, body: dict[str, Any], key: str) -> list[requests.Response]:
    barrier = threading.Barrier(PARALLEL)
    headers = api.headers("acme", **{"Idempotency-Key": key})

    def post(_: int) -> requests.Response:
        with requests.Session() as session:  # its own connection, like separate clients
            barrier.wait()
            for attempt in range(RETRIES):
                try:
                    return session.post(
                        f"{api.base}/invoices", json=body, headers=headers, timeout=60
                    )
                except requests.ConnectionError:
                    # The local gateway's listen backlog is small (ThreadingHTTPServer's 5):
                    # a burst of 20 connects can be reset. A client retries with the same key,
                    # which is what the key is for.
                    if attempt == RETRIES - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            raise AssertionError("unreachable")

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(post, range(PARALLEL)))


def _items_with_reference(api: ApiClient, reference: str) -> list[dict[str, Any]]:
    ddb = api.stack.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": api.stack.resources.invoices_table,
        "ConsistentRead": True,
        "FilterExpression": "#r = :r",
        "ExpressionAttributeNames": {"#r": "reference"},
        "ExpressionAttributeValues": {":r": {"S": reference}},
    }
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_twenty_parallel_posts_with_one_key_answer_one_invoice(api: ApiClient) -> None:
    reference = f"HTTP-IDEM-{uuid.uuid4().hex[:8]}"
    body = invoice_body(total="777.70", reference=reference)
    answers = _post_together(api, body, key=f"idem-{uuid.uuid4()}")

    codes = sorted({a.status_code for a in answers})
    assert set(codes) <= {201, 409}, [a.text for a in answers if a.status_code not in (201, 409)]
    created = [a.json() for a in answers if a.status_code == 201]
    assert created, "the first request must create the invoice"
    invoice_ids = {c["invoiceId"] for c in created}
    assert len(invoice_ids) == 1, invoice_ids
    assert all(c["status"] == "EMITTED" for c in created)  # the first answer, replayed
    for conflict in (a for a in answers if a.status_code == 409):
        error = conflict.json()["error"]
        assert error["code"] == "IDEMPOTENCY_CONFLICT" and "in progress" in error["message"]

    (invoice_id,) = invoice_ids
    items = _items_with_reference(api, reference)
    assert [i["invoiceId"]["S"] for i in items] == [invoice_id]
    assert api.get(invoice_id).status_code == 200


def test_a_retry_after_the_burst_replays_the_same_invoice(api: ApiClient) -> None:
    key = f"idem-{uuid.uuid4()}"
    body = invoice_body(total="12.34")
    first = {a.json()["invoiceId"] for a in _post_together(api, body, key) if a.status_code == 201}
    again = api.emit(body, key=key)
    assert again.status_code == 201 and {again.json()["invoiceId"]} == first
    other_body = api.emit(invoice_body(total="12.35"), key=key)
    assert other_body.status_code == 409
    assert "different body" in other_body.json()["error"]["message"]
