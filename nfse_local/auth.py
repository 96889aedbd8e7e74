"""Cognito ID-token verification for the local gateway: what API Gateway's authorizer checks.

RS256 only, keys from the user pool's JWKS (fetched once and cached), and the claims a Cognito
user-pool authorizer relies on: signature, `exp`, `iss` (the AWS form of the pool's URL), `aud`
(the app client id; ID tokens carry it there) and `token_use == "id"`.
"""

from __future__ import annotations

from typing import Any

import jwt
from jwt import PyJWKClient

ALGORITHMS = ["RS256"]
BEARER = "bearer"


class TokenError(Exception):
    """The request carries no usable identity token; `reason` says why (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MissingToken(TokenError):
    """No Authorization header, or an empty one."""


class InvalidToken(TokenError):
    """A token was sent but fails verification (signature, expiry, issuer, audience, use)."""


class ExpiredToken(InvalidToken):
    """A well-signed token past its `exp`."""


def cognito_issuer(region: str, user_pool_id: str) -> str:
    """The `iss` Cognito writes into its tokens (moto writes the same AWS form)."""
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def bearer_token(authorization: str | None) -> str:
    """The token of an Authorization header, with or without the `Bearer ` prefix."""
    parts = (authorization or "").split()
    if parts and parts[0].lower() == BEARER:
        parts = parts[1:]
    value = parts[0] if len(parts) == 1 else ""
    if not parts:
        raise MissingToken("no identity token in the Authorization header")
    if not value:
        raise InvalidToken("the Authorization header is not `Bearer <token>` nor a bare token")
    return value


class JwtVerifier:
    """Verifies Cognito ID tokens; `verify` returns the claims or raises a `TokenError`."""

    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        *,
        leeway_seconds: float = 0.0,
        jwks_client: PyJWKClient | None = None,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._leeway = leeway_seconds
        # PyJWKClient caches the key set, and fetches it again only for an unknown kid.
        self._jwks = jwks_client or PyJWKClient(jwks_url, cache_keys=True, lifespan=3600)

    def verify(self, token: str) -> dict[str, Any]:
        if not token:
            raise MissingToken("no identity token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a JWT: {exc}") from exc
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise InvalidToken("the signing keys could not be fetched") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"no signing key for this token: {exc}") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "token_use"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredToken("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token was issued for another app client") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("the token was issued by another user pool") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from exc
        if claims.get("token_use") != "id":
            raise InvalidToken(f"an ID token is required, not {claims.get('token_use')!r}")
        return claims
