"""Settings built from the environment once, when a handler or the worker starts.

Domain code never reads os.environ: it receives these models. Every setting is named in
docs/architecture.md (configuration reference) and set by template.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SettingsError(RuntimeError):
    """The environment does not describe a runnable component; raised at start, never later."""


class _EnvSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        try:
            return cls.model_validate(dict(env))
        except ValidationError as exc:
            missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise SettingsError(f"{cls.__name__}: invalid or missing settings: {missing}") from exc


class QuerySettings(_EnvSettings):
    """GetFn: reads invoices only."""

    invoices_table: str = Field(alias="INVOICES_TABLE", min_length=1)


class ApiSettings(QuerySettings):
    """EmitFn."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    tenants_table: str = Field(alias="TENANTS_TABLE", min_length=1)
    rps_counters_table: str = Field(alias="RPS_COUNTERS_TABLE", min_length=1)
    docs_bucket: str = Field(alias="DOCS_BUCKET", min_length=1)
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", min_length=1)
    rps_serie: str = Field(alias="RPS_SERIE", default="1", min_length=1, max_length=5)
    max_body_bytes: int = Field(alias="MAX_BODY_BYTES", default=65_536, gt=0)
    idempotency_ttl_seconds: int = Field(alias="IDEMPOTENCY_TTL_SECONDS", default=86_400, gt=0)
    # The KMS key for SSE-KMS on the documents bucket; empty means the bucket default.
    docs_kms_key_id: str = Field(alias="DOCS_KMS_KEY_ID", default="")
