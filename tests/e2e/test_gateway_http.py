"""The platform over HTTP, as a client sees it: API key, Cognito JWT, emit, get, isolation."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from jwt.algorithms import RSAAlgorithm
from lxml import etree

from nfse_core.store.ledger import Ledger
from nfse_core.store.sql_executors import SqlAlchemyExecutor
from nfse_core.xml.schema import schema_errors
from nfse_local.auth import cognito_issuer
from nfse_local.samples import invoice_body
from nfse_local.stack import LocalStack, StackError, StackOptions
from tests.e2e.conftest import ApiClient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
STATUSES = {"EMITTED", "PROCESSING", "ISSUED", "FAILED"}
SESSION_KEYS = {
    "apiUrl",
    "apiKey",
    "awsEndpoint",
    "region",
    "bucket",
    "table",
    "queueUrl",
    "dlqUrl",
    "stateMachineArn",
    "userPoolId",
    "clientId",
    "ledgerUrl",
    "simulatorUrl",
    "lambdaEnv",
    "tenants",
}


def error_of(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) == {"field", "message"}
    return error


def fields_of(error: dict[str, Any]) -> set[str]:
    return {detail["field"] for detail in error["details"]}


def moto_signed_token(stack: LocalStack, **overrides: Any) -> str:
    """A token signed with the key moto's Cognito signs with: well signed, other claims chosen."""
    resource = importlib.resources.files("moto.cognitoidp") / "resources/jwks-private.json.gz"
    jwk = json.loads(gzip.decompress(resource.read_bytes()))  # a single private JWK
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iss": cognito_issuer(stack.region, stack.resources.user_pool_id),
        "aud": stack.resources.user_pool_client_id,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 600,
        "cognito:username": "ops@acme",
        "custom:tenant_id": "acme",
    }
    claims.update(overrides)
    key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": jwk["kid"]})  # type: ignore[arg-type]


# ----------------------------------------------------------------------- the flow ---


def test_emit_then_get(api: ApiClient) -> None:
    created = api.emit(invoice_body())
    assert created.status_code == 201, created.text
    body = created.json()
    invoice_id = body["invoiceId"]
    assert body == {"invoiceId": invoice_id, "status": "EMITTED", "xmlKey": f"xml/{invoice_id}.xml"}
    assert created.headers["Location"] == f"/invoices/{invoice_id}"
    assert created.headers["x-amzn-RequestId"]

    fetched = api.get(invoice_id)
    assert fetched.status_code == 200, fetched.text
    invoice = fetched.json()
    assert invoice["invoiceId"] == invoice_id
    assert invoice["status"] in STATUSES
    assert invoice["cnpj"] == "11222333000181"
    assert invoice["total"] == "1500.00"


def test_the_worker_issues_the_invoice(api: ApiClient, local_stack: LocalStack) -> None:
    assert local_stack.worker_process is not None, "the stack runs the worker"
    invoice_id = api.emit(invoice_body()).json()["invoiceId"]
    deadline = time.monotonic() + 30
    invoice = api.get(invoice_id).json()
    while invoice["status"] in {"EMITTED", "PROCESSING"} and time.monotonic() < deadline:
        time.sleep(0.2)
        invoice = api.get(invoice_id).json()
    assert invoice["status"] == "ISSUED", invoice
    assert invoice["nfseNumber"]
    assert invoice["processedAt"]

    # The documents are in S3 and valid; the ledger row agrees with the status of record.
    s3 = local_stack.client("s3")
    bucket = local_stack.resources.docs_bucket
    for key in (invoice["xmlKey"], f"signed/{invoice_id}.xml"):
        document = etree.fromstring(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert schema_errors(document) == [], key
    answer = s3.get_object(Bucket=bucket, Key=f"nfse/{invoice_id}.xml")["Body"].read()
    assert invoice["nfseNumber"].encode() in answer
    executor = SqlAlchemyExecutor.from_url(local_stack.ledger_url)
    try:
        row = Ledger(executor).get(invoice_id)
    finally:
        executor.engine.dispose()
    assert row is not None
    assert (row.status.value, row.nfse_number) == ("ISSUED", invoice["nfseNumber"])
    assert format(row.total, "f") == invoice["total"]


def test_concurrent_emits_get_distinct_invoices_and_rps_numbers(api: ApiClient) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: api.emit(invoice_body()), range(6)))
    assert [a.status_code for a in answers] == [201] * 6
    ids = {a.json()["invoiceId"] for a in answers}
    assert len(ids) == 6
    numbers = {api.get(invoice_id).json()["rps"]["numero"] for invoice_id in ids}
    assert len(numbers) == 6


def test_idempotent_replay_over_http(api: ApiClient) -> None:
    key = f"replay-{uuid.uuid4()}"
    first = api.emit(invoice_body(), key=key)
    again = api.emit(invoice_body(), key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()

    conflict = api.emit(invoice_body(total="99.90"), key=key)
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "IDEMPOTENCY_CONFLICT"


def test_malformed_json_is_400(api: ApiClient) -> None:
    headers = api.headers("acme", **{"Content-Type": "application/json"})
    answer = api.request("POST", "/invoices", data=b'{"cnpj": "1122', headers=headers)
    assert answer.status_code == 400
    assert error_of(answer)["code"] == "MALFORMED_REQUEST"


def test_invalid_fields_are_400_with_each_field(api: ApiClient) -> None:
    answer = api.emit(invoice_body(cnpj="11222333000199", total="-1"))
    assert answer.status_code in {400, 403}  # a bad CNPJ is never one the tenant owns
    assert error_of(answer)["code"] in {"VALIDATION_FAILED", "FORBIDDEN"}


# ------------------------------------------------------------------- the gateway ---


def test_missing_api_key_is_403(api: ApiClient) -> None:
    answer = api.request("GET", "/invoices/anything", headers=api.headers("acme", api_key=None))
    assert answer.status_code == 403
    error = error_of(answer)
    assert error["code"] == "FORBIDDEN"
    assert fields_of(error) == {"x-api-key"}


def test_wrong_api_key_is_403(api: ApiClient) -> None:
    headers = api.headers("acme", api_key="not-the-key")
    answer = api.request("POST", "/invoices", json=invoice_body(), headers=headers)
    assert answer.status_code == 403
    assert error_of(answer)["code"] == "FORBIDDEN"


def test_no_token_is_401(api: ApiClient) -> None:
    answer = api.request("GET", "/invoices/anything", headers=api.headers(None))
    assert answer.status_code == 401
    error = error_of(answer)
    assert error["code"] == "UNAUTHORIZED"
    assert fields_of(error) == {"Authorization"}


@pytest.mark.parametrize(
    "case",
    ["expired", "garbage", "other_pool", "other_client", "access_token", "forged_signature"],
)
def test_unusable_tokens_are_401(api: ApiClient, local_stack: LocalStack, case: str) -> None:
    now = int(time.time())
    if case == "expired":
        token = moto_signed_token(local_stack, iat=now - 7200, exp=now - 3600)
    elif case == "garbage":
        token = "not-a-jwt"
    elif case == "other_pool":
        token = moto_signed_token(local_stack, iss=cognito_issuer("us-east-1", "us-east-1_Other"))
    elif case == "other_client":
        token = moto_signed_token(local_stack, aud="another-app-client")
    elif case == "access_token":
        token = moto_signed_token(local_stack, token_use="access")
    else:
        header, _, signature = local_stack.tenant("acme").token.split(".")
        payload = jwt.utils.base64url_encode(json.dumps({"custom:tenant_id": "globex"}).encode())
        token = f"{header}.{payload.decode()}.{signature}"
    headers = {"x-api-key": local_stack.api_key, "Authorization": f"Bearer {token}"}
    answer = api.request("POST", "/invoices", json=invoice_body(), headers=headers)
    assert answer.status_code == 401, answer.text
    error = error_of(answer)
    assert error["code"] == "UNAUTHORIZED"
    if case == "expired":  # well signed: it is the expiry that refuses it
        assert error["details"] == [{"field": "Authorization", "message": "the token has expired"}]


def test_token_without_bearer_prefix_is_accepted(api: ApiClient, local_stack: LocalStack) -> None:
    headers = {"x-api-key": local_stack.api_key, "Authorization": local_stack.tenant("acme").token}
    answer = api.request("GET", f"/invoices/{uuid.uuid4().hex}", headers=headers)
    assert answer.status_code == 404  # got through the gateway to GetFn


def test_unknown_route_and_method_are_404(api: ApiClient) -> None:
    unknown = api.request("GET", "/nowhere", headers=api.headers())
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "NOT_FOUND"

    wrong_method = api.request("DELETE", "/invoices", headers=api.headers())
    assert wrong_method.status_code == 404
    assert error_of(wrong_method)["code"] == "NOT_FOUND"
    assert wrong_method.headers["Allow"] == "POST"


def test_payload_over_10_mb_is_413_at_the_gateway(api: ApiClient) -> None:
    headers = api.headers("acme", **{"Content-Type": "application/json"})
    answer = api.request("POST", "/invoices", data=b" " * (10 * 1024 * 1024 + 1), headers=headers)
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "PAYLOAD_TOO_LARGE"


def test_chunked_bodies_are_read_and_limited(api: ApiClient) -> None:
    headers = api.headers("acme", **{"Content-Type": "application/json"})
    body = json.dumps(invoice_body()).encode()
    small = api.request("POST", "/invoices", data=iter([body[:100], body[100:]]), headers=headers)
    assert small.status_code == 201, small.text

    block = b" " * (1 << 20)
    large = api.request("POST", "/invoices", data=(block for _ in range(11)), headers=headers)
    assert large.status_code == 413
    assert error_of(large)["code"] == "PAYLOAD_TOO_LARGE"


def test_body_over_the_function_limit_is_413(api: ApiClient) -> None:
    answer = api.emit(invoice_body(discriminacao="x" * 70_000))
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "PAYLOAD_TOO_LARGE"


# ------------------------------------------------------------------------ tenancy ---


def test_tenant_cannot_see_another_tenants_invoice(api: ApiClient) -> None:
    created = api.emit(invoice_body(), tenant="acme")
    assert created.status_code == 201
    invoice_id = created.json()["invoiceId"]

    foreign = api.get(invoice_id, tenant="globex")
    unknown = api.get("01J00000000000000000000000", tenant="globex")
    assert foreign.status_code == unknown.status_code == 404
    assert error_of(foreign)["code"] == "NOT_FOUND"
    assert foreign.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_tenant_cannot_emit_for_a_cnpj_it_does_not_own(api: ApiClient) -> None:
    answer = api.emit(invoice_body(cnpj="11222333000181"), tenant="globex")
    assert answer.status_code == 403
    assert error_of(answer)["code"] == "FORBIDDEN"


# ------------------------------------------------------------------------ session ---


def test_session_file_has_everything_and_its_tokens_work(local_stack: LocalStack) -> None:
    session = json.loads(local_stack.session_file.read_text())
    assert set(session) >= SESSION_KEYS
    assert oct(local_stack.session_file.stat().st_mode & 0o777) == "0o600"
    assert session["apiUrl"].startswith("http://127.0.0.1:")
    assert session["awsEndpoint"].startswith("http://127.0.0.1:")
    for name in ("INVOICES_TABLE", "TENANTS_TABLE", "DOCS_BUCKET", "STATE_MACHINE_ARN"):
        assert session["lambdaEnv"][name]
    assert len(session["tenants"]) >= 2
    for tenant in session["tenants"]:
        headers = {"x-api-key": session["apiKey"], "Authorization": f"Bearer {tenant['token']}"}
        body = invoice_body(cnpj=tenant["cnpjs"][0])
        answer = requests.post(
            f"{session['apiUrl']}/invoices", json=body, headers=headers, timeout=30
        )
        assert answer.status_code == 201, (tenant["tenantId"], answer.text)
        fetched = requests.get(
            f"{session['apiUrl']}/invoices/{answer.json()['invoiceId']}",
            headers=headers,
            timeout=30,
        )
        assert fetched.status_code == 200


def test_refreshed_tokens_land_in_the_session_file(local_stack: LocalStack) -> None:
    before = json.loads(local_stack.session_file.read_text())
    local_stack.refresh_tokens()
    after = json.loads(local_stack.session_file.read_text())
    assert [t["tenantId"] for t in after["tenants"]] == [t["tenantId"] for t in before["tenants"]]
    pairs = zip(after["tenants"], before["tenants"], strict=True)
    assert all(new["token"] != old["token"] for new, old in pairs)
    tenant = after["tenants"][0]
    headers = {"x-api-key": after["apiKey"], "Authorization": tenant["token"]}
    answer = requests.get(f"{after['apiUrl']}/invoices/nope", headers=headers, timeout=30)
    assert answer.status_code == 404


def test_a_second_stack_on_the_same_state_dir_is_refused(local_stack: LocalStack) -> None:
    with pytest.raises(StackError, match="already running"):
        LocalStack(StackOptions(state_dir=local_stack.state_dir)).start()
    assert local_stack.session_file.exists()  # the running stack's session is untouched
    assert requests.get(local_stack.api_url, timeout=5).status_code == 404


def test_invoke_command_runs_against_the_session(local_stack: LocalStack) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nfse_local",
            "invoke",
            "--session",
            str(local_stack.session_file),
            "events/get/unknown.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"statusCode": 404' in done.stdout


def test_serve_command_writes_the_session_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"AWS_ENDPOINT_URL", "MOTO_PORT"}}
    process = subprocess.Popen(
        [sys.executable, "-m", "nfse_local", "serve", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    session_file = tmp_path / "session.json"
    try:
        deadline = time.monotonic() + 90
        while not session_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_file.exists(), process.stderr.read() if process.stderr else ""
        session = json.loads(session_file.read_text())
        tenant = session["tenants"][1]
        headers = {"x-api-key": session["apiKey"], "Authorization": tenant["token"]}
        answer = requests.get(f"{session['apiUrl']}/invoices/nope", headers=headers, timeout=30)
        assert answer.status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert not session_file.exists()  # a stopped stack leaves no stale session
    if session["workerPid"] is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(session["workerPid"], 0)  # the worker went down with the stack
    assert b"ready in" in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(session["apiUrl"], timeout=5)
