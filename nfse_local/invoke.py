"""Run sample events through their real handlers: the `sam local invoke` of this project.

An event at events/<function>/<case>.json goes to functions/<function>/app.py:handler. The
handlers talk to moto: an in-process moto with every resource created from template.yaml
(default), or a running local stack (`--session .local/session.json`).
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import requests
from moto import mock_aws

from nfse_core.store.control import TenantDirectory
from nfse_local.cfn import load_template
from nfse_local.gateway import function_handlers
from nfse_local.moto_patches import atomic_moto_writes
from nfse_local.resources import LocalResources, create_resources
from nfse_local.runtime import LambdaContext
from nfse_local.samples import TENANTS

ROOT = Path(__file__).resolve().parent.parent
LAST_INVOICE = "{lastInvoiceId}"
_WARM: dict[str, int] = {}  # function -> the Invoker whose env its warm caches were built with
_SERIAL = itertools.count()


@cache
def function_timeout(folder: str) -> float:
    """The template's Timeout of the function whose code is functions/<folder>/: the context's
    remaining time runs out then, as in Lambda (in-process, nothing stops the handler)."""
    template = load_template(ROOT / "template.yaml")
    default = float((template.get("Globals") or {}).get("Function", {}).get("Timeout", 3))
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        if str(props.get("CodeUri", "")).strip("/").endswith(f"functions/{folder}"):
            return float(props.get("Timeout", default))
    return default


def function_of(event_path: Path) -> str:
    """events/<function>/<case>.json -> <function>."""
    return event_path.resolve().parent.name


def _handler_module(function: str) -> ModuleType:
    return importlib.import_module(f"functions.{function}.app")


def reset_handler_caches(module: ModuleType) -> None:
    """Forget what a warm handler built (clients, settings), e.g. after the env changed."""
    for value in vars(module).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear) and getattr(value, "__module__", None) == module.__name__:
            clear()


class Invoker:
    """Invokes handlers with events, carrying the last emitted invoiceId between events."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._serial = next(_SERIAL)
        self.last_invoice_id: str | None = None

    def _prepare(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.last_invoice_id is None:
            return event
        text = json.dumps(event).replace(LAST_INVOICE, self.last_invoice_id)
        prepared: dict[str, Any] = json.loads(text)
        return prepared

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        changed = any(os.environ.get(k) != v for k, v in self._env.items())
        os.environ.update(self._env)
        module = _handler_module(function)
        if changed or _WARM.get(function) != self._serial:
            reset_handler_caches(module)  # a warm handler must not keep another stack's clients
            _WARM[function] = self._serial
        context = LambdaContext(function, timeout_ms=int(function_timeout(function) * 1000))
        response: dict[str, Any] = module.handler(self._prepare(event), context)
        body = response.get("body")
        if response.get("statusCode") == 201 and isinstance(body, str):
            self.last_invoice_id = json.loads(body).get("invoiceId", self.last_invoice_id)
        return response

    def invoke_file(self, path: Path) -> dict[str, Any]:
        return self.invoke(function_of(path), json.loads(path.read_text()))


@cache
def _moto_session() -> Any:
    """One boto3 session for every in-process stack: its service models are loaded once (the
    credentials are always the fixed `testing` pair that in_process_stack sets)."""
    return boto3.session.Session(region_name="us-east-1")


def _settle_executions(sfn: Any, state_machine_arn: str, timeout: float = 10.0) -> None:
    """Wait (a bounded time) for the executions still running: moto runs them in threads, and
    one that outlived its stack would send its message into the next stack's queue of the same
    name (a message for an invoice that stack never had)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
        if not running["executions"]:
            return
        time.sleep(0.05)


@contextmanager
def in_process_stack() -> Iterator[LocalResources]:
    """moto in this process, resources from template.yaml, sample tenants seeded."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "NfsePlatform",
            "POWERTOOLS_SERVICE_NAME": "nfse-local",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with (
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
            atomic_moto_writes(),  # conditional writes atomic, as DynamoDB's are
        ):
            session = _moto_session()
            resources = create_resources(session, template_path=ROOT / "template.yaml")
            directory = TenantDirectory(session.client("dynamodb"), resources.tenants_table)
            for tenant in TENANTS:
                directory.put_tenant(tenant.tenant_id, tenant.cnpjs, tenant.name)
            try:
                yield resources
            finally:
                _settle_executions(session.client("stepfunctions"), resources.state_machine_arn)
    finally:
        os.environ.clear()
        os.environ.update(saved)


class SessionInvoker:
    """Sends events to a running local stack's function processes (its session file), each
    running with its own role, as `sam local invoke` sends them to the Lambda RIE."""

    def __init__(self, session_file: Path) -> None:
        data = json.loads(session_file.read_text())
        self._urls: dict[str, str] = dict(data["functions"])
        self._folders = {
            ref.split(":")[0].split(".")[1]: name for name, ref in _function_refs().items()
        }
        self.last_invoice_id: str | None = None

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        name = self._folders.get(function, function)
        if self.last_invoice_id is not None:
            event = json.loads(json.dumps(event).replace(LAST_INVOICE, self.last_invoice_id))
        answer = requests.post(self._urls[name], json=event, timeout=600).json()
        if "error" in answer:
            raise RuntimeError(f"{name} failed: {answer['error']}")
        response: dict[str, Any] = answer["result"]
        body = response.get("body") if isinstance(response, dict) else None
        if response.get("statusCode") == 201 and isinstance(body, str):
            self.last_invoice_id = json.loads(body).get("invoiceId", self.last_invoice_id)
        return response

    def invoke_file(self, path: Path) -> dict[str, Any]:
        return self.invoke(function_of(path), json.loads(path.read_text()))


def _function_refs() -> dict[str, str]:
    return function_handlers()


def main(paths: list[str], session_file: str | None = None) -> int:
    events = [Path(p) for p in paths]
    if session_file:
        return _run(SessionInvoker(Path(session_file)), events)
    with in_process_stack() as resources:
        return _run(Invoker(resources.local_api_env()), events)


def _run(invoker: Invoker | SessionInvoker, events: list[Path]) -> int:
    worst = 0
    for path in events:
        response = invoker.invoke_file(path)
        status = int(response.get("statusCode", 500))
        worst = max(worst, status)
        body = response.get("body")
        shown = json.loads(body) if isinstance(body, str) and body.startswith("{") else body
        print(json.dumps({"event": str(path), "statusCode": status, "body": shown}, indent=2))
    return 1 if worst >= 500 else 0
