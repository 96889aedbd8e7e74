"""Shared fixtures: an in-process moto stack built from template.yaml, and handler invocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nfse_local.invoke import Invoker, in_process_stack
from nfse_local.resources import LocalResources


@pytest.fixture
def resources() -> Iterator[LocalResources]:
    """moto (in this process) with every resource of template.yaml and the sample tenants."""
    with in_process_stack() as created:
        yield created


@pytest.fixture
def stack_env(resources: LocalResources) -> dict[str, str]:
    """EmitFn's environment for that stack."""
    return resources.api_env()


@pytest.fixture
def invoker(stack_env: dict[str, str]) -> Invoker:
    return Invoker(stack_env)


@pytest.fixture
def aws(stack_env: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1")


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
