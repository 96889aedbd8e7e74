"""The worker's long poll, over a real socket (moto's server): an idle receive of the production
20 s wait ends normally, with no read timeout, retry or abandoned poll."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import fields

import boto3
import pytest
from moto.server import ThreadedMotoServer

from adapters_service.consumer import Consumer, Disposition, Received, Verdict
from nfse_core.bootstrap import worker_clients
from nfse_core.config import WorkerSettings
from nfse_local.cfn import load_template
from nfse_local.iam_map.project import TEMPLATE_PATH

pytestmark = pytest.mark.integration


def production_wait_seconds() -> int:
    """WORKER_WAIT_SECONDS as the template gives it to the worker task."""
    task = load_template(TEMPLATE_PATH)["Resources"]["WorkerTaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    default = next(f.default for f in fields(WorkerSettings) if f.name == "wait_seconds")
    return int(env.get("WORKER_WAIT_SECONDS", default))


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sqs = boto3.client("sqs")
    try:
        yield sqs.create_queue(QueueName="long-poll")["QueueUrl"]
    finally:
        server.stop()


def test_an_idle_production_long_poll_ends_without_a_timeout(
    queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect: the worker long-polled 20 s through a client whose read timeout was 10 s. An
    idle receive timed out and was retried, and a poll the client had abandoned could still
    take messages on the server (hidden for the visibility timeout, one receive counted)."""
    wait = production_wait_seconds()
    assert wait == 20
    clients = worker_clients(4, wait)

    def never(message: Received) -> Verdict:
        raise AssertionError("nothing to receive")

    consumer = Consumer(
        sqs=clients.sqs, queue_url=queue, handler=never, concurrency=4, wait_seconds=wait
    )
    with caplog.at_level(logging.DEBUG, logger="botocore"):
        assert consumer._receive(4) == []
    retried = [r for r in caplog.records if "Retry needed" in r.getMessage()]
    assert retried == [], [r.getMessage() for r in retried]
    assert Disposition.DELETE  # the consumer module is what the worker runs
