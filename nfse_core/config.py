"""Settings built from the environment once, when a handler or the worker starts.

Domain code never reads os.environ: it receives these models. Every setting is named in
docs/architecture.md (configuration reference) and set by template.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SettingsError(RuntimeError):
    """The environment does not describe a runnable component; raised at start, never later."""


class _EnvSettings(BaseModel):
    # defer_build: a component builds only the settings model it uses (cold start).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        try:
            return cls.model_validate(dict(env))
        except ValidationError as exc:
            missing = "; ".join(
                f"{e['loc'][0] if e['loc'] else cls.__name__}: {e['msg']}" for e in exc.errors()
            )
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
    rps_serie: str = Field(alias="RPS_SERIE", default="1", pattern=r"^[A-Za-z0-9]{1,5}$")
    max_body_bytes: int = Field(alias="MAX_BODY_BYTES", default=65_536, gt=0)
    idempotency_ttl_seconds: int = Field(alias="IDEMPOTENCY_TTL_SECONDS", default=86_400, gt=0)
    # The KMS key for SSE-KMS on the documents bucket; empty means the bucket default.
    docs_kms_key_id: str = Field(alias="DOCS_KMS_KEY_ID", default="")


class LedgerSettings(_EnvSettings):
    """Where the ledger lives: the RDS Data API in AWS, a SQLAlchemy URL locally and in tests."""

    # Aurora cluster ARN and the Secrets Manager secret the Data API signs in with.
    cluster_arn: str = Field(alias="DB_CLUSTER_ARN", default="")
    secret_arn: str = Field(alias="DB_SECRET_ARN", default="")
    database: str = Field(alias="DB_NAME", default="nfse", min_length=1)
    # `sqlite:///.local/ledger.db` or `postgresql+psycopg://user@host/db`.
    database_url: str = Field(alias="DATABASE_URL", default="")


class IssuanceSettings(LedgerSettings):
    """What the issuance use case needs: the worker and ProcessorFn share it."""

    invoices_table: str = Field(alias="INVOICES_TABLE", min_length=1)
    docs_bucket: str = Field(alias="DOCS_BUCKET", min_length=1)
    docs_kms_key_id: str = Field(alias="DOCS_KMS_KEY_ID", default="")
    provider_environment: Literal["homologacao", "producao"] = Field(
        alias="PROVIDER_ENVIRONMENT", default="homologacao"
    )
    # Local mode: every municipality's provider is the simulator at this URL.
    provider_endpoint_override: str = Field(alias="PROVIDER_ENDPOINT_OVERRIDE", default="")
    cert_source: Literal["secretsmanager", "file"] = Field(
        alias="CERT_SOURCE", default="secretsmanager"
    )
    cert_secret_prefix: str = Field(alias="CERT_SECRET_PREFIX", default="nfse/certificates")
    cert_dir: str = Field(alias="CERT_DIR", default="")
    # Loaded certificates are kept this long per company: a renewed certificate is picked up
    # within it, and Secrets Manager + KMS are called once per company per period, not per send.
    cert_cache_seconds: float = Field(alias="CERT_CACHE_SECONDS", default=21_600.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not self.database_url and not (self.cluster_arn and self.secret_arn):
            raise ValueError("set DATABASE_URL, or DB_CLUSTER_ARN and DB_SECRET_ARN")
        if self.cert_source == "file" and not self.cert_dir:
            raise ValueError("CERT_SOURCE=file needs CERT_DIR")
        return self


class WorkerSettings(IssuanceSettings):
    """The adapter worker (ECS Fargate task, or a local process)."""

    requests_queue_url: str = Field(alias="REQUESTS_QUEUE_URL", min_length=1)
    concurrency: int = Field(alias="WORKER_CONCURRENCY", default=16, ge=1, le=256)
    wait_seconds: int = Field(alias="WORKER_WAIT_SECONDS", default=20, ge=0, le=20)
    visibility_timeout: int = Field(alias="VISIBILITY_TIMEOUT", default=120, ge=1)
    # Quick tries inside one delivery, then SQS redelivery with exponential backoff.
    attempts_per_delivery: int = Field(alias="WORKER_ATTEMPTS_PER_DELIVERY", default=3, ge=1)
    backoff_base_seconds: float = Field(alias="WORKER_BACKOFF_BASE_SECONDS", default=5.0, gt=0)
    # Touched before every poll; adapters_service.health (the ECS health check) reads it.
    heartbeat_file: str = Field(alias="WORKER_HEARTBEAT_FILE", default="/tmp/worker.heartbeat")  # noqa: S108


class ProcessorSettings(IssuanceSettings):
    """ProcessorFn: reprocesses what the DLQ holds."""

    dlq_url: str = Field(alias="DLQ_URL", min_length=1)
    max_messages: int = Field(alias="PROCESSOR_MAX_MESSAGES", default=50, ge=1, le=1000)
