"""Idempotent emit on top of Powertools' idempotency utility (DynamoDB persistence).

The key is the tenant plus the client's Idempotency-Key header (or the body's `reference`);
the payload hash is over the canonical body, so the same key with a different body is 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from nfse_core.domain.errors import FieldError, IdempotencyConflict, ServiceUnavailable
from nfse_core.domain.ids import idempotency_scope
from nfse_core.http import canonical_json

EmitFn = Callable[[], dict[str, Any]]


def body_fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of the canonical body: what a replay compares to tell a retry from another
    request reusing the key."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


class IdempotentEmitter:
    """Runs an emit once per (tenant, key); later calls replay the first answer."""

    def __init__(self, *, client: Any, table: str, ttl_seconds: int) -> None:
        persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            expires_after_seconds=ttl_seconds,
            raise_on_no_idempotency_key=True,
        )

        def run(*, command: dict[str, str], action: EmitFn) -> dict[str, Any]:
            return action()

        self._run: Callable[..., dict[str, Any]] = idempotent_function(
            run,
            data_keyword_argument="command",
            persistence_store=persistence,
            config=config,
            key_prefix="emit",
        )
        self._config = config

    def register_lambda_context(self, context: Any) -> None:
        """Lets an in-progress record expire with the invocation (Powertools' own mechanism)."""
        self._config.register_lambda_context(context)

    def run(self, *, tenant: str, key: str, body: dict[str, Any], action: EmitFn) -> dict[str, Any]:
        command = {"key": idempotency_scope(tenant, key), "body": canonical_json(body)}
        try:
            result: dict[str, Any] = self._run(command=command, action=action)
        except IdempotencyValidationError as exc:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different body",
                [FieldError("Idempotency-Key", "reused with a different body")],
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is in progress; retry shortly",
                [FieldError("Idempotency-Key", "in progress")],
            ) from exc
        except IdempotencyPersistenceLayerError as exc:
            raise ServiceUnavailable("Idempotency store unavailable; retry the request") from exc
        return result
