"""The IAM harness of the integration tests: a moto stack from template.yaml in which every
principal calls with its own role's credentials and IAM is enforced as AWS enforces it
(nfse_local/iam.py, nfse_local/moto_patches.py).

Registered as a pytest plugin by tests/conftest.py, so its fixtures need no import:
`dummy_credentials` (request it with `pytest.mark.usefixtures`) and `stack` (an `Enforced`).
The helpers (`enforced_stack`, `refused`, `store_certificate`, `emitted_invoice`, the principal
names) are imported.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from nfse_local.certs import generate_a1_certificate
from nfse_local.iam import LocalIam, PolicyDocument, Principal, create_user, template_principals
from nfse_local.moto_patches import aws_iam_parity, iam_enforced
from nfse_local.resources import LocalResources, create_resources
from tests.integration.conftest import store_emitted_invoice

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"

WORKER = "WorkerTaskRole"
PROCESSOR = "ProcessorFn"
CNPJ = "11222333000181"

# A refusal as each service sends it: the JSON services' AccessDeniedException (HTTP 400),
# S3's AccessDenied, and the bare 403 of SQS (moto's XML) and of a HEAD (no body).
REFUSALS = {(400, "AccessDeniedException"), (403, "AccessDenied"), (403, "403")}


@dataclass(frozen=True)
class Enforced:
    """A moto stack from template.yaml, one user per principal, IAM enforced."""

    resources: LocalResources
    iam: LocalIam

    def client(self, service: str, principal: str | None = None) -> Any:
        """A client as `principal` (None: the harness's admin)."""
        session = self.iam.session(principal)
        return session.client(service, endpoint_url=self.resources.endpoint_url)  # type: ignore[call-overload]

    def user(self, name: str, statements: Sequence[Mapping[str, Any]]) -> Enforced:
        """A probe: a user of our own with exactly `statements`, as a principal of a copy."""
        credentials = create_user(
            self.client("iam"), name, [{"Version": "2012-10-17", "Statement": list(statements)}]
        )
        users = {**self.iam.users, name: credentials}
        return Enforced(self.resources, _with_users(self.iam, users))

    def table_arn(self, table: str) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"


def _with_users(iam: LocalIam, users: Mapping[str, dict[str, str]]) -> LocalIam:
    return LocalIam(
        users=users,
        admin_credentials=iam.admin_credentials,
        principal_policies=iam.principal_policies,
        state_machine_roles=iam.state_machine_roles,
        region=iam.region,
        endpoint_url=iam.endpoint_url,
    )


Vary = Callable[[Mapping[str, Principal]], Mapping[str, Sequence[PolicyDocument]]]


@contextlib.contextmanager
def enforced_stack(vary: Vary | None = None) -> Iterator[Enforced]:
    """moto in this process; `vary` may replace principals' policies (a test's variant)."""
    registry: dict[str, dict[str, str]] = {}
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        aws_iam_parity(registry),
    ):
        session = boto3.session.Session(region_name=REGION)
        resources = create_resources(session, template_path=TEMPLATE_PATH)
        policies = None
        if vary is not None:
            policies = vary(template_principals(session, resources, template_path=TEMPLATE_PATH))
        iam = LocalIam.create(session, resources, template_path=TEMPLATE_PATH, policies=policies)
        registry.update(iam.task_credentials())
        with iam_enforced():
            yield Enforced(resources, iam)


@pytest.fixture
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's dummy credentials for the harness before enforcement; nothing else leaks in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stack() -> Iterator[Enforced]:
    """A fresh enforced stack (template.yaml's policies as they are)."""
    with enforced_stack() as enforced:
        yield enforced


def refused(call: Callable[[], object]) -> ClientError:
    """`call` is refused by IAM (not failing for any other reason)."""
    with pytest.raises(ClientError) as caught:
        call()
    answer = caught.value.response
    status = answer["ResponseMetadata"]["HTTPStatusCode"]
    assert (status, answer["Error"].get("Code")) in REFUSALS, answer
    return caught.value


def emitted_invoice(stack: Enforced) -> str:
    """An EMITTED invoice and its XML, written by the harness (as EmitFn would)."""
    return store_emitted_invoice(
        stack.client("s3"), stack.client("dynamodb"), stack.resources, CNPJ
    )


def store_certificate(stack: Enforced) -> None:
    """A fresh A1 certificate of CNPJ in its secret (nfse/certificates/<cnpj>), as admin does."""
    password = secrets.token_urlsafe(16)
    pfx = generate_a1_certificate(CNPJ, password)
    stack.client("secretsmanager").create_secret(
        Name=f"nfse/certificates/{CNPJ}",
        SecretString=json.dumps({"pfx": base64.b64encode(pfx).decode(), "password": password}),
    )
