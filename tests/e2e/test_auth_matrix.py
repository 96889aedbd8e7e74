"""The auth matrix over HTTP: every kind of credential against both operations, as a table.

Each row names who calls (API key and Authorization header) and the answer each operation
must give: POST /invoices for tenant acme's CNPJ, and GET /invoices/{acme's invoice}. Every
answer is checked for the error body and for leaks: nothing of tenant globex (tenant id, name,
CNPJ, invoice id) appears in any answer, and an unauthenticated caller learns nothing of either
tenant. Then the cross-tenant cases: globex's invoice read by acme is byte-for-byte the 404 of
an id that never existed; acme emitting for globex's CNPJ is byte-for-byte the 403 for a CNPJ
nobody owns (a tenant cannot probe which companies are customers); and an Idempotency-Key
reused by another tenant never returns the first tenant's invoice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pycognito.aws_srp import AWSSRP

from nfse_core.domain.ids import new_invoice_id
from nfse_local.samples import invoice_body
from nfse_local.stack import LocalStack
from tests.e2e.conftest import ApiClient
from tests.e2e.test_gateway_http import error_of, moto_signed_token

pytestmark = pytest.mark.e2e

A, B = "acme", "globex"
A_CNPJ, B_CNPJ = "11222333000181", "11444777000161"
NOBODYS_CNPJ = "11444777000242"  # valid check digits, owned by no tenant


# ------------------------------------------------------------------------- the world ---


@dataclass(frozen=True)
class World:
    stack: LocalStack
    a_invoice: str
    b_invoice: str
    tokens: dict[str, str]  # name -> Authorization value

    def secrets_of_b(self) -> list[str]:
        return [B, "Globex", B_CNPJ, self.b_invoice, self.stack.tenant(B).username]

    def secrets_of_a(self) -> list[str]:
        return [A_CNPJ, self.a_invoice, self.stack.tenant(A).username]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _user(stack: LocalStack, username: str, tenant_id: str | None) -> str:
    """A Cognito user (with custom:tenant_id when given); returns its password."""
    cognito = stack.client("cognito-idp")
    attributes = [{"Name": "email", "Value": f"{uuid.uuid4().hex}@example.com"}]
    if tenant_id is not None:
        attributes.append({"Name": "custom:tenant_id", "Value": tenant_id})
    cognito.admin_create_user(
        UserPoolId=stack.resources.user_pool_id,
        Username=username,
        UserAttributes=attributes,
        MessageAction="SUPPRESS",
    )
    password = f"Matrix-{uuid.uuid4().hex[:12]}-9a!"
    cognito.admin_set_user_password(
        UserPoolId=stack.resources.user_pool_id,
        Username=username,
        Password=password,
        Permanent=True,
    )
    return password


def _authenticate(stack: LocalStack, username: str, password: str, client_id: str) -> Any:
    """Sign in as an app client does: SRP (the app clients allow no password flow)."""
    return AWSSRP(
        username=username,
        password=password,
        pool_id=stack.resources.user_pool_id,
        client_id=client_id,
        client=stack.client("cognito-idp"),
    ).authenticate_user()["AuthenticationResult"]


def _foreign_key_tokens(real_token: str, kid: str) -> tuple[str, str]:
    """The real token's claims signed by a key the pool never published: once under the
    pool's own kid (the signature is what fails), once under an unknown kid."""
    claims = jwt.decode(real_token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) + 600
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    same_kid = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})
    other_kid = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "not-in-the-jwks"})
    return same_kid, other_kid


def _alg_confusion_token(stack: LocalStack, real_token: str) -> str:
    """HS256 with the pool's public key as the HMAC secret (the classic algorithm confusion)."""
    jwks = requests.get(
        f"{stack.aws_endpoint}/{stack.resources.user_pool_id}/.well-known/jwks.json", timeout=10
    ).json()
    secret = json.dumps(jwks["keys"][0]).encode()
    claims = jwt.decode(real_token, options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.fixture(scope="module")
def world(local_stack: LocalStack, api: ApiClient) -> World:
    stack = local_stack
    a = api.emit(invoice_body(A_CNPJ), tenant=A)
    b = api.emit(invoice_body(B_CNPJ), tenant=B)
    assert a.status_code == b.status_code == 201, (a.text, b.text)

    cognito = stack.client("cognito-idp")
    other_client = cognito.create_user_pool_client(
        UserPoolId=stack.resources.user_pool_id,
        ClientName="another-app",
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    acme = stack.tenant(A)
    main_client = stack.resources.user_pool_client_id
    own = _authenticate(stack, acme.username, acme.password, main_client)
    other_app = _authenticate(stack, acme.username, acme.password, other_client)
    assert jwt.decode(other_app["IdToken"], options={"verify_signature": False})["aud"] == (
        other_client
    )

    no_tenant_user = f"no-tenant-{uuid.uuid4().hex[:8]}"
    no_tenant = _authenticate(
        stack, no_tenant_user, _user(stack, no_tenant_user, None), main_client
    )["IdToken"]
    ghost_user = f"ghost-{uuid.uuid4().hex[:8]}"
    ghost = _authenticate(stack, ghost_user, _user(stack, ghost_user, "ghost"), main_client)[
        "IdToken"
    ]

    kid = jwt.get_unverified_header(own["IdToken"])["kid"]
    foreign_same_kid, foreign_other_kid = _foreign_key_tokens(own["IdToken"], kid)
    header, payload, _ = own["IdToken"].split(".")
    now = int(time.time())
    tokens = {
        "valid": f"Bearer {own['IdToken']}",
        "valid_bare": own["IdToken"],
        "malformed_garbage": "Bearer not.a.jwt",
        "malformed_two_parts": "Bearer a b",
        "malformed_basic": "Basic dXNlcjpwYXNz",
        "malformed_empty_bearer": "Bearer ",
        "alg_none": f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg_hs256_confusion": f"Bearer {_alg_confusion_token(stack, own['IdToken'])}",
        "wrong_signature_same_kid": f"Bearer {foreign_same_kid}",
        "wrong_signature_unknown_kid": f"Bearer {foreign_other_kid}",
        "signature_stripped": f"Bearer {header}.{payload}.",
        "expired": f"Bearer {moto_signed_token(stack, iat=now - 7200, exp=now - 60)}",
        "wrong_audience": f"Bearer {other_app['IdToken']}",
        "access_token": f"Bearer {own['AccessToken']}",
        "no_tenant_claim": f"Bearer {no_tenant}",
        "unknown_tenant": f"Bearer {ghost}",
        "tenant_b": f"Bearer {stack.tenant(B).token}",
    }
    return World(stack, a.json()["invoiceId"], b.json()["invoiceId"], tokens)


# ------------------------------------------------------------------------- the matrix ---

KEY_VALID, KEY_MISSING, KEY_WRONG = "valid", "missing", "wrong"


@dataclass(frozen=True)
class Row:
    """Who calls, and (status, code) for POST acme's CNPJ and for GET acme's invoice."""

    api_key: str
    token: str | None  # a World.tokens name; None sends no Authorization header
    post: tuple[int, str]
    get: tuple[int, str]
    authenticated: bool = False  # a tenant is known: only other tenants' data must not leak


UNAUTHORIZED = (401, "UNAUTHORIZED")
FORBIDDEN = (403, "FORBIDDEN")
NOT_FOUND = (404, "NOT_FOUND")
MATRIX: dict[str, Row] = {
    "valid token, own invoice": Row(KEY_VALID, "valid", (201, ""), (200, ""), True),
    "valid token without Bearer": Row(KEY_VALID, "valid_bare", (201, ""), (200, ""), True),
    "no token": Row(KEY_VALID, None, UNAUTHORIZED, UNAUTHORIZED),
    "malformed: garbage": Row(KEY_VALID, "malformed_garbage", UNAUTHORIZED, UNAUTHORIZED),
    "malformed: two parts": Row(KEY_VALID, "malformed_two_parts", UNAUTHORIZED, UNAUTHORIZED),
    "malformed: Basic": Row(KEY_VALID, "malformed_basic", UNAUTHORIZED, UNAUTHORIZED),
    "malformed: empty Bearer": Row(KEY_VALID, "malformed_empty_bearer", UNAUTHORIZED, UNAUTHORIZED),
    "alg none": Row(KEY_VALID, "alg_none", UNAUTHORIZED, UNAUTHORIZED),
    "HS256 with the public key": Row(KEY_VALID, "alg_hs256_confusion", UNAUTHORIZED, UNAUTHORIZED),
    "wrong signature (pool's kid)": Row(
        KEY_VALID, "wrong_signature_same_kid", UNAUTHORIZED, UNAUTHORIZED
    ),
    "wrong signature (unknown kid)": Row(
        KEY_VALID, "wrong_signature_unknown_kid", UNAUTHORIZED, UNAUTHORIZED
    ),
    "signature stripped": Row(KEY_VALID, "signature_stripped", UNAUTHORIZED, UNAUTHORIZED),
    "expired": Row(KEY_VALID, "expired", UNAUTHORIZED, UNAUTHORIZED),
    "wrong audience (another app client)": Row(
        KEY_VALID, "wrong_audience", UNAUTHORIZED, UNAUTHORIZED
    ),
    "access token instead of ID token": Row(KEY_VALID, "access_token", UNAUTHORIZED, UNAUTHORIZED),
    "ID token without custom:tenant_id": Row(
        KEY_VALID, "no_tenant_claim", UNAUTHORIZED, UNAUTHORIZED
    ),
    "tenant with no companies": Row(KEY_VALID, "unknown_tenant", FORBIDDEN, NOT_FOUND, True),
    "tenant B on A's CNPJ and invoice": Row(KEY_VALID, "tenant_b", FORBIDDEN, NOT_FOUND, True),
    "missing API key, valid token": Row(KEY_MISSING, "valid", FORBIDDEN, FORBIDDEN),
    "wrong API key, valid token": Row(KEY_WRONG, "valid", FORBIDDEN, FORBIDDEN),
    "missing API key, no token": Row(KEY_MISSING, None, FORBIDDEN, FORBIDDEN),
    "wrong API key, expired token": Row(KEY_WRONG, "expired", FORBIDDEN, FORBIDDEN),
}


def _headers(world: World, row: Row) -> dict[str, str]:
    headers: dict[str, str] = {}
    if row.api_key == KEY_VALID:
        headers["x-api-key"] = world.stack.api_key
    elif row.api_key == KEY_WRONG:
        headers["x-api-key"] = world.stack.api_key[:-1] + (
            "x" if world.stack.api_key[-1] != "x" else "y"
        )
    if row.token is not None:
        headers["Authorization"] = world.tokens[row.token]
    return headers


def _text_of(answer: requests.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    return f"{headers}\n{answer.text}"


def assert_reveals_nothing(world: World, row: Row, answer: requests.Response) -> None:
    text = _text_of(answer)
    secrets = world.secrets_of_b() + ([] if row.authenticated else world.secrets_of_a())
    # tenant B's own row legitimately authenticates as B; then A's data is the other tenant's.
    if row.token == "tenant_b":
        secrets = world.secrets_of_a()
    for secret in secrets:
        assert secret not in text, (secret, text)


@pytest.mark.parametrize("operation", ["POST", "GET"])
@pytest.mark.parametrize("case", list(MATRIX))
def test_auth_matrix(world: World, api: ApiClient, case: str, operation: str) -> None:
    row = MATRIX[case]
    headers = _headers(world, row)
    if operation == "POST":
        expected = row.post
        headers["Idempotency-Key"] = str(uuid.uuid4())
        answer = api.request("POST", "/invoices", json=invoice_body(A_CNPJ), headers=headers)
    else:
        expected = row.get
        answer = api.request("GET", f"/invoices/{world.a_invoice}", headers=headers)
    status, code = expected
    assert answer.status_code == status, (case, operation, answer.text)
    if code:
        error = error_of(answer)
        assert error["code"] == code, error
    elif operation == "GET":
        assert answer.json()["invoiceId"] == world.a_invoice
    assert_reveals_nothing(world, row, answer)


# ------------------------------------------------------------------- cross-tenant ---

VOLATILE_HEADERS = {"date", "x-amzn-requestid"}


def _stable_headers(answer: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in answer.headers.items() if k.lower() not in VOLATILE_HEADERS}


def test_another_tenants_invoice_is_byte_identical_to_an_unknown_id(
    world: World, api: ApiClient
) -> None:
    foreign = api.get(world.b_invoice, tenant=A)
    unknown = api.get(new_invoice_id(), tenant=A)
    garbage = api.get("x" * 26, tenant=A)
    assert foreign.status_code == unknown.status_code == garbage.status_code == 404
    assert foreign.content == unknown.content == garbage.content
    assert _stable_headers(foreign) == _stable_headers(unknown)
    assert world.b_invoice not in _text_of(foreign)
    # and the other way round
    assert api.get(world.a_invoice, tenant=B).content == unknown.content


def test_another_tenants_cnpj_is_byte_identical_to_a_cnpj_nobody_owns(
    world: World, api: ApiClient
) -> None:
    customers = api.emit(invoice_body(B_CNPJ), tenant=A)
    nobodys = api.emit(invoice_body(NOBODYS_CNPJ), tenant=A)
    assert customers.status_code == nobodys.status_code == 403
    assert error_of(customers)["code"] == "FORBIDDEN"
    assert customers.content == nobodys.content
    assert _stable_headers(customers) == _stable_headers(nobodys)
    assert B_CNPJ not in _text_of(customers)


def test_an_idempotency_key_reused_by_another_tenant_never_returns_the_first_invoice(
    world: World, api: ApiClient
) -> None:
    key = f"shared-{uuid.uuid4()}"
    first = api.emit(invoice_body(A_CNPJ), tenant=A, key=key)
    same_body_other_tenant = api.emit(invoice_body(B_CNPJ), tenant=B, key=key)
    assert first.status_code == same_body_other_tenant.status_code == 201
    assert first.json()["invoiceId"] != same_body_other_tenant.json()["invoiceId"]
    assert first.json()["invoiceId"] not in same_body_other_tenant.text
    # B sending a key A used, with A's exact body: B's own answer (403), never A's 201.
    other_key = f"shared-{uuid.uuid4()}"
    a_again = api.emit(invoice_body(A_CNPJ), tenant=A, key=other_key)
    assert a_again.status_code == 201
    replay = api.emit(invoice_body(A_CNPJ), tenant=B, key=other_key)
    assert replay.status_code == 403
    assert error_of(replay)["code"] == "FORBIDDEN"
    assert a_again.json()["invoiceId"] not in _text_of(replay)


def test_every_401_and_403_has_the_same_body_whatever_the_token_says(
    world: World, api: ApiClient
) -> None:
    """Refusals are generic: their message never depends on whose token it was."""
    bodies = set()
    for name in ("wrong_audience", "access_token", "wrong_signature_same_kid"):
        headers = {"x-api-key": world.stack.api_key, "Authorization": world.tokens[name]}
        answer = api.request("GET", f"/invoices/{world.b_invoice}", headers=headers)
        assert answer.status_code == 401
        bodies.add(error_of(answer)["message"])
        assert_reveals_nothing(world, MATRIX["no token"], answer)
    assert bodies == {"Missing or invalid identity token"}
