"""Settings built from the environment once, when a handler or the worker starts.

Domain code never reads os.environ: it receives these objects. Every setting is named in
docs/architecture.md (configuration reference) and set by template.yaml.

Plain frozen dataclasses, not pydantic: GetFn's cold start would otherwise import pydantic for
one table name (about 40 ms, docs/performance.md). `setting()` declares a field's environment
variable and its bounds; `from_env` converts by the field's type (str, int, float or a Literal),
checks the bounds and reports every bad variable at once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints


class SettingsError(RuntimeError):
    """The environment does not describe a runnable component; raised at start, never later."""


@dataclass(frozen=True, slots=True)
class _Rule:
    alias: str
    min_length: int = 0
    pattern: str | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None


def setting(  # noqa: PLR0913 - keyword-only: the alias, default and validation rules
    *,
    alias: str,
    default: Any = MISSING,
    min_length: int = 0,
    pattern: str | None = None,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> Any:
    """A settings field read from the environment variable `alias`; no default means required."""
    rule = _Rule(alias, min_length, pattern, gt, ge, le)
    return field(default=default, metadata={"setting": rule})


def _convert(kind: Any, raw: str) -> Any:
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        if raw not in choices:
            raise ValueError("must be one of " + ", ".join(map(str, choices)))
        return raw
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    return raw


def _check(rule: _Rule, value: Any) -> None:
    if isinstance(value, str):
        if len(value) < rule.min_length:
            raise ValueError("must not be empty" if rule.min_length == 1 else "too short")
        if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
            raise ValueError(f"must match {rule.pattern}")
        return
    if rule.gt is not None and not value > rule.gt:
        raise ValueError(f"must be greater than {rule.gt:g}")
    if rule.ge is not None and not value >= rule.ge:
        raise ValueError(f"must be at least {rule.ge:g}")
    if rule.le is not None and not value <= rule.le:
        raise ValueError(f"must be at most {rule.le:g}")


class _EnvSettings:
    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        kinds = get_type_hints(cls)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in fields(cls):
            rule: _Rule = spec.metadata["setting"]
            raw = env.get(rule.alias)
            if raw is None and spec.default is MISSING:
                problems.append(f"{rule.alias}: required")
                continue
            try:
                value = spec.default if raw is None else _convert(kinds[spec.name], raw)
                _check(rule, value)
            except ValueError as error:
                problems.append(f"{rule.alias}: {error}")
                continue
            values[spec.name] = value
        if not problems:
            settings = cls(**values)
            try:
                settings.validate()
            except ValueError as error:
                problems.append(str(error))
            else:
                return settings
        raise SettingsError(f"{cls.__name__}: invalid or missing settings: " + "; ".join(problems))

    @classmethod
    def variables(cls, *, required_only: bool = False) -> frozenset[str]:
        """The environment variables this component reads (or must have)."""
        return frozenset(
            spec.metadata["setting"].alias
            for spec in fields(cls)
            if not required_only or spec.default is MISSING
        )

    def validate(self) -> None:
        """Rules across fields; raise ValueError. Every field already passed its own."""


def providers_object_key_setting() -> Any:
    """PROVIDERS_OBJECT_KEY: the deployment's provider registry in the documents bucket, over
    the shipped one (nfse_core/providers/registry_source.py); empty: the shipped registry only."""
    return setting(
        alias="PROVIDERS_OBJECT_KEY",
        default="",
        pattern=r"(?:[A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*\.json|",
    )


def providers_cache_seconds_setting() -> Any:
    """PROVIDERS_CACHE_SECONDS: how long a read of the deployed registry is used before the
    object is read again."""
    return setting(alias="PROVIDERS_CACHE_SECONDS", default=300.0, ge=1, le=86_400)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySettings(_EnvSettings):
    """GetFn: reads invoices only."""

    invoices_table: str = setting(alias="INVOICES_TABLE", min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings(QuerySettings):
    """EmitFn."""

    idempotency_table: str = setting(alias="IDEMPOTENCY_TABLE", min_length=1)
    tenants_table: str = setting(alias="TENANTS_TABLE", min_length=1)
    rps_counters_table: str = setting(alias="RPS_COUNTERS_TABLE", min_length=1)
    docs_bucket: str = setting(alias="DOCS_BUCKET", min_length=1)
    state_machine_arn: str = setting(alias="STATE_MACHINE_ARN", min_length=1)
    rps_serie: str = setting(alias="RPS_SERIE", default="1", pattern=r"^[A-Za-z0-9]{1,5}$")
    # Which environment the documents are for (NFS-e Nacional's DPS carries it: tpAmb).
    provider_environment: Literal["homologacao", "producao"] = setting(
        alias="PROVIDER_ENVIRONMENT", default="homologacao"
    )
    # Local mode: the simulators answer for every municipality, so none is refused at emit.
    provider_endpoint_override: str = setting(alias="PROVIDER_ENDPOINT_OVERRIDE", default="")
    max_body_bytes: int = setting(alias="MAX_BODY_BYTES", default=65_536, gt=0)
    idempotency_ttl_seconds: int = setting(alias="IDEMPOTENCY_TTL_SECONDS", default=86_400, gt=0)
    # The KMS key for SSE-KMS on the documents bucket; empty means the bucket default.
    docs_kms_key_id: str = setting(alias="DOCS_KMS_KEY_ID", default="")
    # The registry that picks each municipality's standard (its document): the worker's.
    providers_object_key: str = providers_object_key_setting()
    providers_cache_seconds: float = providers_cache_seconds_setting()


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSettings(_EnvSettings):
    """Where the ledger lives: the RDS Data API in AWS, a SQLAlchemy URL locally and in tests."""

    # Aurora cluster ARN and the Secrets Manager secret the Data API signs in with.
    cluster_arn: str = setting(alias="DB_CLUSTER_ARN", default="")
    secret_arn: str = setting(alias="DB_SECRET_ARN", default="")
    database: str = setting(alias="DB_NAME", default="nfse", min_length=1)
    # `sqlite:///.local/ledger.db` or `postgresql+psycopg://user@host/db`.
    database_url: str = setting(alias="DATABASE_URL", default="")


def _require_ledger(settings: LedgerSettings) -> None:
    if not settings.database_url and not (settings.cluster_arn and settings.secret_arn):
        raise ValueError("set DATABASE_URL, or DB_CLUSTER_ARN and DB_SECRET_ARN")


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuanceSettings(LedgerSettings):
    """What the issuance use case needs: the worker and ProcessorFn share it."""

    invoices_table: str = setting(alias="INVOICES_TABLE", min_length=1)
    docs_bucket: str = setting(alias="DOCS_BUCKET", min_length=1)
    docs_kms_key_id: str = setting(alias="DOCS_KMS_KEY_ID", default="")
    provider_environment: Literal["homologacao", "producao"] = setting(
        alias="PROVIDER_ENVIRONMENT", default="homologacao"
    )
    # Local mode: every municipality's provider is the simulator at this URL.
    provider_endpoint_override: str = setting(alias="PROVIDER_ENDPOINT_OVERRIDE", default="")
    # PEM bundle of the roots that provider servers chain to (e.g. ICP-Brasil); empty: certifi.
    provider_ca_bundle: str = setting(alias="PROVIDER_CA_BUNDLE", default="")
    cert_source: Literal["secretsmanager", "file"] = setting(
        alias="CERT_SOURCE", default="secretsmanager"
    )
    cert_secret_prefix: str = setting(alias="CERT_SECRET_PREFIX", default="nfse/certificates")
    cert_dir: str = setting(alias="CERT_DIR", default="")
    # Loaded certificates are kept this long per company: a renewed certificate is picked up
    # within it, and Secrets Manager + KMS are called once per company per period, not per send.
    cert_cache_seconds: float = setting(alias="CERT_CACHE_SECONDS", default=21_600.0, gt=0)
    providers_object_key: str = providers_object_key_setting()
    providers_cache_seconds: float = providers_cache_seconds_setting()

    def validate(self) -> None:
        _require_ledger(self)
        if self.cert_source == "file" and not self.cert_dir:
            raise ValueError("CERT_SOURCE=file needs CERT_DIR")
        if self.provider_endpoint_override and self.provider_environment == "producao":
            raise ValueError(
                "PROVIDER_ENDPOINT_OVERRIDE (the local simulator) cannot be used with"
                " PROVIDER_ENVIRONMENT=producao"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings(IssuanceSettings):
    """The adapter worker (ECS Fargate task, or a local process)."""

    requests_queue_url: str = setting(alias="REQUESTS_QUEUE_URL", min_length=1)
    concurrency: int = setting(alias="WORKER_CONCURRENCY", default=16, ge=1, le=256)
    wait_seconds: int = setting(alias="WORKER_WAIT_SECONDS", default=20, ge=0, le=20)
    visibility_timeout: int = setting(alias="VISIBILITY_TIMEOUT", default=120, ge=1)
    # Quick tries inside one delivery, then SQS redelivery with exponential backoff.
    attempts_per_delivery: int = setting(alias="WORKER_ATTEMPTS_PER_DELIVERY", default=3, ge=1)
    backoff_base_seconds: float = setting(alias="WORKER_BACKOFF_BASE_SECONDS", default=5.0, gt=0)
    # Touched before every poll; adapters_service.health (the ECS health check) reads it.
    heartbeat_file: str = setting(alias="WORKER_HEARTBEAT_FILE", default="/tmp/worker.heartbeat")  # noqa: S108


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorSettings(IssuanceSettings):
    """ProcessorFn: reprocesses what the DLQ holds."""

    dlq_url: str = setting(alias="DLQ_URL", min_length=1)
    max_messages: int = setting(alias="PROCESSOR_MAX_MESSAGES", default=50, ge=1, le=1000)
    # A DLQ message not settled in a run stays invisible this long: about the schedule's period.
    hold_seconds: int = setting(alias="PROCESSOR_HOLD_SECONDS", default=900, ge=0, le=43_200)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweeperSettings(LedgerSettings):
    """SweeperFn: re-drives stuck invoices and writes the ledger rows nobody else could."""

    invoices_table: str = setting(alias="INVOICES_TABLE", min_length=1)
    docs_bucket: str = setting(alias="DOCS_BUCKET", min_length=1)
    requests_queue_url: str = setting(alias="REQUESTS_QUEUE_URL", min_length=1)
    redrive_after_seconds: int = setting(alias="SWEEP_REDRIVE_AFTER_SECONDS", default=900, ge=60)
    live_window_seconds: int = setting(alias="SWEEP_LIVE_WINDOW_SECONDS", default=2100, ge=60)
    stuck_after_seconds: int = setting(alias="STUCK_AFTER_SECONDS", default=3600, ge=60)

    def validate(self) -> None:
        _require_ledger(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateSettings(LedgerSettings):
    """MigrateFn (the deploy's LedgerMigrations custom resource): the ledger as its admin.

    DB_SECRET_ARN is the cluster's master secret here, not the application role's; the
    optional app secret is the one whose password the migrations give nfse_app.
    """

    app_secret_arn: str = setting(alias="DB_APP_SECRET_ARN", default="")

    def validate(self) -> None:
        _require_ledger(self)
        if bool(self.cluster_arn) != bool(self.secret_arn):
            raise ValueError("DB_CLUSTER_ARN and DB_SECRET_ARN go together")
