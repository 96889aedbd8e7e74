"""`python -m nfse_local smoke` against the running local stack, as against a deployed one.

The smoke signs in by SRP (answering the TOTP challenge for a user with MFA), POSTs one invoice,
follows it with GETs and exits 0 on ISSUED, 1 on FAILED, 2 when the deadline passes first. Its
`--stack` form reads the stack's outputs with describe-stacks: here a CloudFormation stack in
the local moto whose outputs name the local API and user pool, as the deployed stack's do.
"""

from __future__ import annotations

import json
import os
import re
import uuid

import boto3
import pytest
from moto.cognitoidp.models import cognitoidp_backends
from moto.core import DEFAULT_ACCOUNT_ID
from pycognito.aws_srp import AWSSRP

from nfse_local.__main__ import main
from nfse_local.smoke import EXIT_ERROR, EXIT_FAILED, EXIT_ISSUED, EXIT_TIMEOUT, totp
from nfse_local.stack import LocalStack
from tests.e2e.conftest import ApiClient

pytestmark = pytest.mark.e2e

POSTED = re.compile(r"POST /invoices 201: (\S+) \(Idempotency-Key ([0-9a-f-]{36})\)")


def smoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["smoke", "--timeout", "60", "--interval", "0.2", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def posted(output: str) -> str:
    found = POSTED.search(output)
    assert found is not None, output
    return found[1]


def test_the_session_form_issues_one_invoice_and_exits_0(
    capsys: pytest.CaptureFixture[str], local_stack: LocalStack, api: ApiClient
) -> None:
    code, out = smoke(capsys, "--session", str(local_stack.session_file))
    assert code == EXIT_ISSUED, out
    invoice_id = posted(out)
    invoice = api.get(invoice_id).json()  # the acme user signed in: the invoice is acme's
    assert invoice["status"] == "ISSUED"
    assert f"ISSUED NFS-e {invoice['nfseNumber']}" in out
    assert out.index("POST /invoices") < out.index("ISSUED")


def test_a_rejected_invoice_prints_the_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], local_stack: LocalStack, api: ApiClient
) -> None:
    code, out = smoke(
        capsys,
        "--session",
        str(local_stack.session_file),
        "--discriminacao",
        "Servico [sim:reject]",
    )
    assert code == EXIT_FAILED, out
    invoice = api.get(posted(out)).json()
    assert invoice["status"] == "FAILED"
    assert f"FAILED {invoice['error']['code']}" in out


def test_no_final_status_before_the_deadline_exits_2(
    capsys: pytest.CaptureFixture[str], local_stack: LocalStack
) -> None:
    # The simulator holds a [sim:timeout] request unanswered for 30 s: nothing is final in 1 s.
    code, out = smoke(
        capsys,
        "--session",
        str(local_stack.session_file),
        "--discriminacao",
        "Servico [sim:timeout]",
        "--timeout",
        "1",
    )
    assert code == EXIT_TIMEOUT, out
    assert "no final status after 1 s" in out


def _stack_with_the_local_outputs(local_stack: LocalStack) -> str:
    """A CloudFormation stack whose outputs are the deployed stack's, for the local API."""
    name = f"nfse-smoke-{uuid.uuid4().hex[:8]}"
    resources = local_stack.resources
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "ApiUrl": {"Value": f"{local_stack.api_url}/"},
            "UserPoolId": {"Value": resources.user_pool_id},
            "UserPoolClientId": {"Value": resources.user_pool_client_id},
        },
    }
    cfn = local_stack.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_the_stack_form_reads_the_outputs_and_takes_secrets_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    local_stack: LocalStack,
    api: ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = _stack_with_the_local_outputs(local_stack)
    tenant = local_stack.tenant("globex")
    # boto3's default session keeps the first credentials it resolved: a caller that had other
    # ones then (this suite, a long-lived shell) must not make the command use them.
    admin_key = os.environ["AWS_ACCESS_KEY_ID"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTALESTALESTALE0")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # restored after the test
    boto3.setup_default_session(region_name=local_stack.region)
    boto3.client("cloudformation")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin_key)
    # boto3 reads AWS_ENDPOINT_URL: describe-stacks and Cognito go to the local moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_stack.aws_endpoint)
    monkeypatch.setenv("SMOKE_PASSWORD", tenant.password)
    monkeypatch.setenv("SMOKE_API_KEY", local_stack.tenant_api_keys["globex"])
    code, out = smoke(
        capsys,
        "--stack",
        stack,
        "--region",
        local_stack.region,
        "--username",
        tenant.username,
        "--password-env",
        "SMOKE_PASSWORD",
        "--api-key-env",
        "SMOKE_API_KEY",
        "--cnpj",
        "11444777000161",
    )
    assert code == EXIT_ISSUED, out
    assert api.get(posted(out), tenant="globex").json()["status"] == "ISSUED"
    assert tenant.password not in out

    code, out = smoke(
        capsys,
        "--stack",
        "no-such-stack",
        "--region",
        local_stack.region,
        "--username",
        tenant.username,
        "--password-env",
        "SMOKE_PASSWORD",
        "--api-key-env",
        "SMOKE_API_KEY",
    )
    assert code == EXIT_ERROR and "no-such-stack" in out


def _user_with_totp(local_stack: LocalStack) -> tuple[str, str, str]:
    """A new acme user with TOTP enrolled: (username, password, the authenticator's secret)."""
    idp = local_stack.client("cognito-idp")
    pool = local_stack.resources.user_pool_id
    username, password = f"mfa-{uuid.uuid4().hex[:6]}@acme", f"Aa1-{uuid.uuid4().hex}"
    idp.admin_create_user(
        UserPoolId=pool,
        Username=username,
        UserAttributes=[
            {"Name": "email", "Value": "mfa@example.com"},
            {"Name": "custom:tenant_id", "Value": "acme"},
        ],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=pool, Username=username, Password=password, Permanent=True
    )
    access = AWSSRP(
        username=username,
        password=password,
        pool_id=pool,
        client_id=local_stack.resources.user_pool_client_id,
        client=idp,
    ).authenticate_user()["AuthenticationResult"]["AccessToken"]
    # The enrolment calls authenticate with the access token alone, unsigned, and the local moto
    # server (which enforces IAM) fails on any unsigned call but sign-in: they go to its
    # in-process backend instead.
    backend = cognitoidp_backends[DEFAULT_ACCOUNT_ID][local_stack.region]
    secret: str = backend.associate_software_token(access, "")["SecretCode"]
    backend.verify_software_token(access, "", totp(secret), "smoke")
    backend.set_user_mfa_preference(access, {"Enabled": True, "PreferredMfa": True}, {})
    return username, password, secret


def test_a_user_with_mfa_signs_in_with_the_totp_secret(
    capsys: pytest.CaptureFixture[str],
    local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    api: ApiClient,
) -> None:
    username, password, secret = _user_with_totp(local_stack)
    monkeypatch.setenv("SMOKE_PASSWORD", password)
    monkeypatch.setenv("SMOKE_TOTP", secret)
    common = [
        "--session",
        str(local_stack.session_file),
        "--username",
        username,
        "--password-env",
        "SMOKE_PASSWORD",
    ]
    # The session's acme key serves the new acme user too.
    monkeypatch.setenv("SMOKE_API_KEY", local_stack.tenant_api_keys["acme"])
    common += ["--api-key-env", "SMOKE_API_KEY"]

    code, out = smoke(capsys, *common)
    assert code == EXIT_ERROR, out
    assert "MFA" in out and "--totp-secret-env" in out and "POST" not in out

    code, out = smoke(capsys, *common, "--totp-secret-env", "SMOKE_TOTP")
    assert code == EXIT_ISSUED, out
    assert api.get(posted(out)).json()["status"] == "ISSUED"
