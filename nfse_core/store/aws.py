"""Lazily built boto3 clients, shared by the stores of one process.

Nothing is created at import time; AWS_ENDPOINT_URL (boto3's own setting) points every client
at the local stack when it is set.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

READ_TIMEOUT_SECONDS = 10
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=READ_TIMEOUT_SECONDS,
)
# A long poll holds the receive open for up to its WaitTimeSeconds: the SQS client must wait
# longer than that, or an idle receive times out and is retried while the abandoned poll can
# still take messages on the server (hidden for the visibility timeout, and counted as a
# receive towards the DLQ).
LONG_POLL_READ_MARGIN_SECONDS = 10


class AwsClients:
    """One boto3 client per service, built on first use.

    `max_pool_connections`: connections each client keeps open. botocore keeps 10; a client
    shared by more threads than that opens a new connection for a call beyond the 10 and
    throws it away afterwards (the worker: one per AWS call at WORKER_CONCURRENCY=32).
    """

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        *,
        max_pool_connections: int | None = None,
        long_poll_seconds: int = 0,
    ) -> None:
        """`long_poll_seconds`: the longest WaitTimeSeconds this process's receives use; the
        SQS client's read timeout is that plus a margin."""
        self._session = session
        self._config = (
            _CONFIG
            if max_pool_connections is None
            else _CONFIG.merge(Config(max_pool_connections=max_pool_connections))
        )
        self.sqs_read_timeout = max(
            READ_TIMEOUT_SECONDS, long_poll_seconds + LONG_POLL_READ_MARGIN_SECONDS
        )

    @cached_property
    def session(self) -> boto3.session.Session:
        return self._session or boto3.session.Session()

    def _client(self, service: str, config: Config | None = None) -> Any:
        return self.session.client(service, config=config or self._config)  # type: ignore[call-overload]

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def stepfunctions(self) -> Any:
        return self._client("stepfunctions")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs", self._config.merge(Config(read_timeout=self.sqs_read_timeout)))

    @cached_property
    def secretsmanager(self) -> Any:
        return self._client("secretsmanager")

    @cached_property
    def rds_data(self) -> Any:
        return self._client("rds-data")
