"""Shared fixtures: an in-process moto stack built from template.yaml, and handler invocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nfse_local.invoke import Invoker, in_process_stack


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    """moto (in this process) with every resource of template.yaml and the sample tenants."""
    with in_process_stack() as env:
        yield env


@pytest.fixture
def invoker(stack_env: dict[str, str]) -> Invoker:
    return Invoker(stack_env)


@pytest.fixture
def aws(stack_env: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1")


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
