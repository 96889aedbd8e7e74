"""Graceful shutdown: stop (what SIGTERM triggers) mid-batch finishes in-flight work, takes no new
messages, and loses nothing: a new worker finishes the rest, each NFS-e issued exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from adapters_service.worker import build_consumer
from nfse_core.config import WorkerSettings
from nfse_core.store.aws import AwsClients
from nfse_core.store.ledger import Ledger
from nfse_local.invoke import Invoker
from nfse_local.resources import LocalResources
from nfse_local.simulator import ProviderSimulator
from tests.integration.conftest import WorkerThread, emit, running_worker, status_of, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def statuses(aws: boto3.session.Session, table: str, ids: list[str]) -> dict[str, str]:
    return {i: status_of(aws, table, i)["status"]["S"] for i in ids}


def test_stop_mid_batch_finishes_in_flight_and_loses_nothing(
    invoker: Invoker,
    resources: LocalResources,
    issuance_env: dict[str, str],
    simulator: ProviderSimulator,
    ledger: Ledger,
    aws: boto3.session.Session,
) -> None:
    ids = [emit(invoker, total=f"{100 + i}.00") for i in range(8)]
    simulator.set_faults(latency=1.0)
    settings = WorkerSettings.from_env({**issuance_env, "WORKER_CONCURRENCY": "3"})
    worker = WorkerThread(build_consumer(settings, AwsClients()))
    with worker:
        wait_for(lambda: simulator.stats()["total_requests"] >= 1, what="work in flight")
    # The context exit called stop() and joined: in-flight sends completed and were recorded.
    seen = statuses(aws, resources.invoices_table, ids)
    issued_now = [i for i, s in seen.items() if s == "ISSUED"]
    assert issued_now, "in-flight invoices finish before the worker exits"
    assert "PROCESSING" not in seen.values(), seen
    assert simulator.stats()["issued"] == len(issued_now)
    assert len(issued_now) < len(ids), "a stopped worker takes no new messages"

    simulator.set_faults(latency=0.0)
    with running_worker(issuance_env):
        wait_for(
            lambda: set(statuses(aws, resources.invoices_table, ids).values()) == {"ISSUED"},
            what="the rest issued by a new worker",
        )
    stats = simulator.stats()
    assert stats["issued"] == len(ids)
    assert set(stats["issuances_per_rps"].values()) == {1}
    for invoice_id in ids:
        row = ledger.get(invoice_id)
        assert row is not None and row.status.value == "ISSUED"


def test_sigterm_stops_the_worker_process_cleanly(issuance_env: dict[str, str]) -> None:
    """The container's signal path: SIGTERM -> stop -> exit 0 within a poll (no moto needed for
    an empty queue: the process only has to reach its loop and leave it)."""
    env = {**os.environ, **issuance_env, "WORKER_WAIT_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    env["REQUESTS_QUEUE_URL"] = "http://127.0.0.1:9/000000000000/nowhere"  # receive fails fast
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters_service"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        lines: list[bytes] = []
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if b"consumer started" in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        rest = process.stdout.read()
        assert b"consumer stopped" in rest, b"".join(lines) + rest
    finally:
        if process.poll() is None:
            process.kill()
