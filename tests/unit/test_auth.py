"""JwtVerifier: what the local gateway accepts as a Cognito ID token, and what it refuses."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWKClient
from jwt.algorithms import RSAAlgorithm

from nfse_local.auth import (
    ExpiredToken,
    InvalidToken,
    JwtVerifier,
    MissingToken,
    bearer_token,
    cognito_issuer,
)

pytestmark = pytest.mark.unit

POOL = "us-east-1_LocalPool"
CLIENT_ID = "local-app-client"
ISSUER = cognito_issuer("us-east-1", POOL)
JWKS_URL = f"http://127.0.0.1:1/{POOL}/.well-known/jwks.json"


class StaticJwks(PyJWKClient):
    """A PyJWKClient whose key set comes from memory (unit tests open no sockets)."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        super().__init__(JWKS_URL, cache_keys=True)
        self._keys = keys
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        return {"keys": self._keys}


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk


@pytest.fixture(scope="module")
def pool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(pool_key: rsa.RSAPrivateKey) -> StaticJwks:
    return StaticJwks([public_jwk(pool_key, "pool-key")])


@pytest.fixture
def verifier(jwks: StaticJwks) -> JwtVerifier:
    return JwtVerifier(JWKS_URL, ISSUER, CLIENT_ID, jwks_client=jwks)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "7d3c6f1e-0000-4000-8000-000000000001",
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "cognito:username": "ops@acme",
        "custom:tenant_id": "acme",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: rsa.RSAPrivateKey, payload: dict[str, Any], kid: str = "pool-key") -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_a_good_id_token_gives_its_claims(
    verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey
) -> None:
    result = verifier.verify(sign(pool_key, claims()))
    assert result["custom:tenant_id"] == "acme"
    assert result["aud"] == CLIENT_ID
    assert result["token_use"] == "id"


def test_keys_are_fetched_once_and_cached(
    verifier: JwtVerifier, jwks: StaticJwks, pool_key: rsa.RSAPrivateKey
) -> None:
    for _ in range(3):
        verifier.verify(sign(pool_key, claims()))
    assert jwks.fetches == 1


def test_expired_token_is_rejected(verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    token = sign(pool_key, claims(iat=now - 7200, exp=now - 60))
    with pytest.raises(ExpiredToken):
        verifier.verify(token)


def test_wrong_signature_is_rejected(verifier: JwtVerifier, other_key: rsa.RSAPrivateKey) -> None:
    # Signed by another key that claims the pool's kid.
    with pytest.raises(InvalidToken):
        verifier.verify(sign(other_key, claims()))


def test_tampered_payload_is_rejected(verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = sign(pool_key, claims()).split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(claims(**{"custom:tenant_id": "globex"})).encode()
    )
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{forged.decode()}.{signature}")


def test_unknown_kid_is_rejected(verifier: JwtVerifier, other_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidToken, match="signing key"):
        verifier.verify(sign(other_key, claims(), kid="someone-else"))


def test_wrong_audience_is_rejected(verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidToken, match="app client"):
        verifier.verify(sign(pool_key, claims(aud="another-client")))


def test_wrong_issuer_is_rejected(verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidToken, match="user pool"):
        verifier.verify(sign(pool_key, claims(iss=cognito_issuer("us-east-1", "us-east-1_Other"))))


def test_access_token_is_not_an_id_token(
    verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(InvalidToken, match="ID token"):
        verifier.verify(sign(pool_key, claims(token_use="access")))


def test_cognito_access_token_without_aud_is_rejected(
    verifier: JwtVerifier, pool_key: rsa.RSAPrivateKey
) -> None:
    # Real access tokens carry client_id, not aud.
    with pytest.raises(InvalidToken):
        verifier.verify(sign(pool_key, claims(aud=None, client_id=CLIENT_ID, token_use="access")))


def test_hs256_and_none_algorithms_are_refused(verifier: JwtVerifier) -> None:
    hs = jwt.encode(claims(), "shared-secret-of-32-bytes-at-least!", algorithm="HS256")
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier.verify(hs)
    unsigned = jwt.encode(claims(), "", algorithm="none")
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier.verify(unsigned)


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..."])
def test_garbage_is_rejected(verifier: JwtVerifier, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(garbage)


def test_empty_token_is_missing(verifier: JwtVerifier) -> None:
    with pytest.raises(MissingToken):
        verifier.verify("")


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  abc", "abc"), ("abc.def.ghi", "abc.def.ghi")],
)
def test_bearer_prefix_is_optional(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   "])
def test_no_token_in_header_is_missing(header: str | None) -> None:
    with pytest.raises(MissingToken):
        bearer_token(header)
