"""The worker's boto3 clients keep a connection per thread (no socket is opened here)."""

from __future__ import annotations

import boto3
import pytest

from adapters_service.worker import worker_clients
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


@pytest.mark.parametrize(("concurrency", "pool"), [(1, 10), (8, 10), (16, 17), (32, 33)])
def test_worker_clients_have_a_connection_per_thread(concurrency: int, pool: int) -> None:
    clients = worker_clients(concurrency)
    clients.__dict__["session"] = _session()  # the lazy session, without the environment
    for client in (clients.sqs, clients.dynamodb, clients.s3):
        assert client.meta.config.max_pool_connections == pool
        assert client.meta.config.read_timeout == 10  # the shared settings survive the merge
