"""The worker's boto3 clients keep a connection per thread (no socket is opened here)."""

from __future__ import annotations

import boto3
import pytest

from nfse_core.bootstrap import worker_clients
from nfse_core.store.aws import AwsClients

pytestmark = pytest.mark.unit


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        region_name="us-east-1",
        aws_access_key_id="unit",
        aws_secret_access_key="unit",
    )


def test_default_clients_keep_botocores_pool_and_settings() -> None:
    clients = AwsClients(_session())
    config = clients.dynamodb.meta.config
    assert config.max_pool_connections == 10
    assert config.read_timeout == 10 and config.connect_timeout == 3


@pytest.mark.parametrize(("concurrency", "pool"), [(1, 10), (8, 10), (16, 18), (32, 34)])
def test_worker_clients_have_a_connection_per_thread(concurrency: int, pool: int) -> None:
    clients = worker_clients(concurrency)
    clients.__dict__["session"] = _session()  # the lazy session, without the environment
    for client in (clients.sqs, clients.dynamodb, clients.s3):
        assert client.meta.config.max_pool_connections == pool
    for client in (clients.dynamodb, clients.s3):
        assert client.meta.config.read_timeout == 10  # the shared settings survive the merge


@pytest.mark.parametrize("wait_seconds", [0, 1, 10, 19, 20])
def test_the_sqs_client_waits_out_the_long_poll(wait_seconds: int) -> None:
    """Defect: a 20 s long poll through a client that gives up reading after 10 s. An idle
    receive then times out (and is retried) while the abandoned poll may still take messages
    on the server, hiding them for the visibility timeout and counting a receive each."""
    clients = worker_clients(4, wait_seconds)
    clients.__dict__["session"] = _session()
    config = clients.sqs.meta.config
    assert config.read_timeout > wait_seconds
    assert config.read_timeout >= wait_seconds + 5  # room for SQS to answer after the wait
