"""The gateway's authorizer: the API key of a usage plan, and the Cognito ID token."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from nfse_local.auth import JwtVerifier, MissingToken, TokenError, bearer_token
from nfse_local.gateway.answers import Answer, error_answer
from nfse_local.gateway.events import Identity, Request
from nfse_local.gateway.routes import API_KEY_HEADER, Route, RouteError


class Authorizer:
    """Checks what a route requires of a request: an API key (any of `api_keys`: every
    tenant's key, one usage plan each; API Gateway accepts any key of a usage plan on the
    stage) and a Cognito ID token `verifier` accepts; the JWT says who calls."""

    def __init__(self, api_keys: Sequence[str], verifier: JwtVerifier | None) -> None:
        self._api_keys = tuple(sorted({k.encode() for k in api_keys if k}))
        self._verifier = verifier

    def authorize(self, route: Route, request: Request) -> Identity | Answer:
        """Who calls, or the refusal (403 for the API key, then 401 for the token)."""
        api_key = request.header(API_KEY_HEADER)
        if route.requires_api_key:
            refused = self._check_api_key(api_key)
            if refused is not None:
                return refused
        claims: dict[str, Any] = {}
        if route.requires_token:
            checked = self._check_token(request.header("Authorization"))
            if isinstance(checked, Answer):
                return checked
            claims = checked
        return Identity(api_key, claims)

    def _check_api_key(self, api_key: str | None) -> Answer | None:
        if not api_key:
            return error_answer(
                403, "FORBIDDEN", "Missing or invalid API key", [(API_KEY_HEADER, "required")]
            )
        sent = api_key.encode()
        # Compared with every key, not stopping at a match: the time taken does not tell which
        # key (or how many) a guess came near.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(sent, key)
        if not matched:
            return error_answer(
                403, "FORBIDDEN", "Missing or invalid API key", [(API_KEY_HEADER, "invalid")]
            )
        return None

    def _check_token(self, authorization: str | None) -> dict[str, Any] | Answer:
        if self._verifier is None:
            raise RouteError("a route needs a Cognito token but the gateway has no verifier")
        try:
            return self._verifier.verify(bearer_token(authorization))
        except MissingToken:
            return error_answer(
                401,
                "UNAUTHORIZED",
                "Missing or invalid identity token",
                [("Authorization", "required")],
            )
        except TokenError as exc:
            return error_answer(
                401,
                "UNAUTHORIZED",
                "Missing or invalid identity token",
                [("Authorization", exc.reason)],
            )
