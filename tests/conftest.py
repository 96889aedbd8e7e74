"""Shared fixtures: an in-process moto stack built from template.yaml, and handler invocation."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nfse_local import pg
from nfse_local.invoke import Invoker, in_process_stack
from nfse_local.resources import LocalResources

pytest_plugins = ["tests.integration.iam_harness", "tests.hypothesis_profiles"]

_EMBEDDED_PG = pytest.StashKey[str]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """DATABASE_URL is also the ledger of the local stacks the suite starts: when it names a
    PostgreSQL server that does not answer, the embedded one (nfse_local/pg.py) replaces it now.
    If none can be had, the tests that need PostgreSQL fail with the reason; the rest run."""
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        with contextlib.suppress(pg.PostgresUnavailable):
            pg.admin_conninfo()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the throwaway PostgreSQL server, if the run started one, and say so in the summary."""
    server = pg.embedded_server()
    if server is not None:
        session.config.stash[_EMBEDDED_PG] = (
            f"no PostgreSQL answered at {server.replaces}: this run used an embedded server on "
            f"127.0.0.1:{server.port} (pid {server.pid}, {server.root}), now stopped"
        )
        pg.stop_embedded()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _EMBEDDED_PG in config.stash:
        terminalreporter.write_line(config.stash[_EMBEDDED_PG])


@pytest.fixture
def resources() -> Iterator[LocalResources]:
    """moto (in this process) with every resource of template.yaml and the sample tenants."""
    with in_process_stack() as created:
        yield created


@pytest.fixture
def stack_env(resources: LocalResources) -> dict[str, str]:
    """EmitFn's environment for that stack (local mode: no municipality refused for lack of a
    registry entry; tests/unit/test_emit_service.py holds the refusal)."""
    return resources.local_api_env()


@pytest.fixture
def invoker(stack_env: dict[str, str]) -> Invoker:
    return Invoker(stack_env)


@pytest.fixture
def aws(stack_env: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1")


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
