"""Executors that run one SQL statement with named parameters (`:name`) and return its rows.

The ledger and the migration runner speak only to the `SqlExecutor` port, so the same SQL
text runs over the RDS Data API in AWS (`DataApiExecutor`) and over a direct connection
locally (`SqlAlchemyExecutor`: PostgreSQL via psycopg, or SQLite).

Contract shared by both executors:
- one statement per call, committed when the call returns; there is no transaction that
  spans calls (the Data API's `transactionId` is deliberately not used), so statements sent
  through here must be safe on their own, and the Data API executor retries transient
  failures, so they must also be idempotent;
- parameters are `None`, `bool`, `int`, `float`, `str`, `Decimal`, aware `datetime`, `date`,
  `UUID` or `bytes`; a naive datetime is refused (its instant would depend on a time zone);
- a datetime reaches PostgreSQL as `timestamptz` through psycopg but as `timestamp` (UTC wall
  time, typeHint TIMESTAMP) through the Data API, which PostgreSQL turns into `timestamptz`
  in the session time zone: the Data API path relies on the cluster's `timezone` parameter
  being UTC (Aurora's default). Statements write datetimes into timestamptz columns or cast;
- rows come back as dicts keyed by column label. PostgreSQL (either path) gives typed values
  (Decimal, aware datetime, int, bool); SQLite gives what it stores (text timestamps,
  int/float numerics), which the caller, knowing its columns, coerces.
"""

from __future__ import annotations

import base64
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from nfse_core.config import LedgerSettings, SettingsError

if TYPE_CHECKING:
    from mypy_boto3_rds_data.client import RDSDataServiceClient
    from mypy_boto3_rds_data.type_defs import (
        ColumnMetadataTypeDef,
        FieldOutputTypeDef,
        SqlParameterTypeDef,
    )
    from sqlalchemy.engine import Engine

POSTGRESQL = "postgresql"
SQLITE = "sqlite"

# The name under which SQLite attaches the ledger's database file, so `nfse.invoices`
# resolves as it does in PostgreSQL's schema.
SQLITE_SCHEMA = "nfse"


class SqlError(RuntimeError):
    """A statement failed; the message is the database's (or the Data API's)."""


class IntegrityViolation(SqlError):
    """A constraint (unique index, check, not null) refused the statement."""


class SqlUnavailable(SqlError):
    """The database could not be reached or stayed busy through every retry; try later."""


class SqlExecutor(Protocol):
    """Runs one statement, committed on return, with `:name` parameters."""

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`: the migration runner adapts the few differences."""
        ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run `sql` with `params`; return its rows (empty for statements without rows)."""
        ...


def _require_aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"parameter {name!r}: naive datetime; pass a timezone-aware one")
    return value


# --------------------------------------------------------------------------- SQLAlchemy


def sqlite_schema_path(database: str | None) -> str:
    """Where the `nfse` schema of a SQLite database lives: a sibling file of the main one.

    `ledger.db` -> `ledger.nfse.db`; an in-memory database gets an in-memory schema.
    """
    if not database or database == ":memory:":
        return ":memory:"
    main = Path(database)
    return str(main.with_name(f"{main.stem}.{SQLITE_SCHEMA}{main.suffix or '.db'}"))


def _attach_sqlite_schema(engine: Engine) -> None:
    """ATTACH the schema file on every pooled connection, including ones made before."""
    from sqlalchemy import event  # noqa: PLC0415 - SQLAlchemy is optional (the local extra)

    path = sqlite_schema_path(engine.url.database)

    def on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("nfse_attached"):
            return
        cursor = dbapi_conn.cursor()
        try:
            attached = {row[1] for row in cursor.execute("PRAGMA database_list")}
            if SQLITE_SCHEMA not in attached:
                cursor.execute(f"ATTACH DATABASE ? AS {SQLITE_SCHEMA}", (path,))
        finally:
            cursor.close()
        record.info["nfse_attached"] = True

    if not event.contains(engine, "checkout", on_checkout):
        event.listen(engine, "checkout", on_checkout)


def create_engine_for_url(url: str) -> Engine:
    """An engine for `postgresql+psycopg://...` or `sqlite:///path` (the local default)."""
    from sqlalchemy import create_engine  # noqa: PLC0415 - SQLAlchemy is optional (the local extra)

    if url.startswith("sqlite"):
        return create_engine(url)
    return create_engine(url, pool_pre_ping=True)


class SqlAlchemyExecutor:
    """Runs statements through SQLAlchemy Core `text()`; PostgreSQL (psycopg) or SQLite."""

    def __init__(self, engine: Engine) -> None:
        name = engine.dialect.name
        if name not in (POSTGRESQL, SQLITE):
            raise ValueError(f"unsupported database dialect {name!r}: use PostgreSQL or SQLite")
        self._engine = engine
        self._dialect = name
        if name == SQLITE:
            _attach_sqlite_schema(engine)

    @classmethod
    def from_url(cls, url: str) -> SqlAlchemyExecutor:
        return cls(create_engine_for_url(url))

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def engine(self) -> Engine:
        return self._engine

    def _adapt(self, name: str, value: Any) -> Any:
        if isinstance(value, datetime):
            value = _require_aware(name, value)
            if self._dialect == SQLITE:
                # One fixed UTC text form, so text order is time order (index on created_at).
                return value.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
            return value
        if self._dialect != SQLITE:
            return value
        if isinstance(value, Decimal | uuid.UUID):
            return str(value)
        if isinstance(value, date | dt_time):
            return value.isoformat()
        return value

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        from sqlalchemy import exc, text  # noqa: PLC0415 - SQLAlchemy is optional (the local extra)

        bound = {n: self._adapt(n, v) for n, v in (params or {}).items()}
        try:
            with self._engine.begin() as conn:
                result = conn.execute(text(sql), bound)
                if not result.returns_rows:
                    return []
                return [dict(row._mapping) for row in result]
        except exc.IntegrityError as error:
            raise IntegrityViolation(str(error.orig)) from error
        except exc.OperationalError as error:
            # SQLite reports constraint failures as IntegrityError too; operational errors
            # are connection loss, lock timeouts, a database going away.
            raise SqlUnavailable(str(error.orig)) from error
        except exc.DBAPIError as error:
            raise SqlError(str(error.orig)) from error


# ----------------------------------------------------------------------------- Data API

# Errors after which the statement did not run (or is safe to run again, being idempotent).
# DatabaseResumingException: Aurora Serverless v2 waking from auto-pause; the same wake-up
# on v1 answers BadRequestException "Communications link failure" (the only place a message
# is read, because AWS gives no other signal for it).
_TRANSIENT_CODES = frozenset(
    {
        "DatabaseResumingException",
        "DatabaseUnavailableException",
        "ServiceUnavailableError",
        "ThrottlingException",
        "InternalServerErrorException",
    }
)
_COMMUNICATIONS_LINK_FAILURE = "Communications link failure"
# SQL errors answer BadRequestException (or DatabaseErrorException on the newer Data API)
# with the message ending "; SQLState: 23505"; the SQLSTATE class is the stable part.
_SQLSTATE = re.compile(r"SQLState:\s*([0-9A-Z]{5})")
_INTEGRITY_SQLSTATE_CLASS = "23"

# The Data API's TIMESTAMP typeHint takes exactly this form, read in the session time zone
# (UTC on the Data API); results come back in the same form, in UTC.
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class StatementRetry:
    """Retries of one SQL statement: exponential backoff with jitter; the defaults wait out an
    Aurora resume (~15-30 s)."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1-based): half fixed, half jitter."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return float(ceiling / 2 + ceiling / 2 * rng())


def default_rds_data_client(region_name: str | None = None) -> RDSDataServiceClient:
    """An rds-data client with botocore's own retries off: `DataApiExecutor` owns the policy,
    so attempts are not multiplied and every transient error follows one backoff."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        # ExecuteStatement waits up to 45 s for the statement before it answers.
        read_timeout=60,
    )
    return boto3.client("rds-data", region_name=region_name, config=config)


def format_data_api_timestamp(value: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, the form the TIMESTAMP typeHint accepts."""
    utc = value.astimezone(UTC)
    text = utc.strftime(_TIMESTAMP_FORMAT)
    return f"{text}.{utc.microsecond:06d}" if utc.microsecond else text


def to_data_api_parameter(name: str, value: Any) -> SqlParameterTypeDef:
    """One `:name` parameter, typed as the Data API needs it to reach PostgreSQL's type."""
    param: dict[str, Any] = {"name": name}
    if value is None:
        param["value"] = {"isNull": True}
    elif isinstance(value, bool):
        param["value"] = {"booleanValue": value}
    elif isinstance(value, int):
        param["value"] = {"longValue": value}
    elif isinstance(value, float):
        param["value"] = {"doubleValue": value}
    elif isinstance(value, Decimal):
        # A number sent as doubleValue would lose cents; DECIMAL makes the Data API cast text.
        param["value"] = {"stringValue": format(value, "f")}
        param["typeHint"] = "DECIMAL"
    elif isinstance(value, datetime):
        param["value"] = {"stringValue": format_data_api_timestamp(_require_aware(name, value))}
        param["typeHint"] = "TIMESTAMP"
    elif isinstance(value, date):
        param["value"] = {"stringValue": value.isoformat()}
        param["typeHint"] = "DATE"
    elif isinstance(value, dt_time):
        param["value"] = {"stringValue": value.isoformat()}
        param["typeHint"] = "TIME"
    elif isinstance(value, uuid.UUID):
        param["value"] = {"stringValue": str(value)}
        param["typeHint"] = "UUID"
    elif isinstance(value, bytes):
        param["value"] = {"blobValue": value}
    elif isinstance(value, str):
        param["value"] = {"stringValue": str(value)}
    else:
        raise TypeError(f"parameter {name!r}: unsupported type {type(value).__name__}")
    return cast("SqlParameterTypeDef", param)


def _parse_timestamp(text: str, *, aware: bool) -> datetime:
    parsed = datetime.fromisoformat(text)
    if not aware:
        return parsed
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_DECIMAL_TYPES = frozenset({"numeric", "decimal"})
_INTEGER_TYPES = frozenset({"int2", "int4", "int8", "serial", "bigserial", "oid"})
_FLOAT_TYPES = frozenset({"float4", "float8"})


def from_data_api_field(field: FieldOutputTypeDef, column: ColumnMetadataTypeDef) -> Any:
    """One result field back to Python, by the column's PostgreSQL type name."""
    if field.get("isNull"):
        return None
    type_name = column.get("typeName", "").lower()
    if "stringValue" in field:
        return _from_data_api_text(field["stringValue"], type_name)
    return _from_data_api_value(field, column, type_name)


def _from_data_api_text(text: str, type_name: str) -> Any:
    """A stringValue field: numerics, timestamps and dates travel as text."""
    if type_name in _DECIMAL_TYPES:
        return Decimal(text)
    if type_name == "timestamptz":
        return _parse_timestamp(text, aware=True)
    if type_name == "timestamp":
        return _parse_timestamp(text, aware=False)
    if type_name == "date":
        return date.fromisoformat(text)
    if type_name in _INTEGER_TYPES:
        return int(text)
    return text


def _from_data_api_value(
    field: FieldOutputTypeDef, column: ColumnMetadataTypeDef, type_name: str
) -> Any:
    """A field that is not a stringValue: numbers, booleans and blobs as the Data API types
    them."""
    if "longValue" in field:
        return int(field["longValue"])
    if "booleanValue" in field:
        return bool(field["booleanValue"])
    if "doubleValue" in field:
        value = field["doubleValue"]
        return Decimal(repr(value)) if type_name in _DECIMAL_TYPES else float(value)
    if "blobValue" in field:
        blob = field["blobValue"]
        return blob if isinstance(blob, bytes) else base64.b64decode(blob)
    if "arrayValue" in field:
        raise SqlError(f"column {column.get('name')!r}: array results are not supported")
    return None


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def is_transient_data_api_error(error: ClientError) -> bool:
    code = _error_code(error)
    if code in _TRANSIENT_CODES:
        return True
    return code == "BadRequestException" and _COMMUNICATIONS_LINK_FAILURE in _error_message(error)


class DataApiExecutor:
    """Runs statements over the RDS Data API (Aurora PostgreSQL), with typed parameters."""

    def __init__(  # noqa: PLR0913 - the Data API's three names; keyword-only test seams
        self,
        resource_arn: str,
        secret_arn: str,
        database: str,
        client: RDSDataServiceClient | None = None,
        *,
        client_factory: Callable[[], RDSDataServiceClient] = default_rds_data_client,
        retry: StatementRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._resource_arn = resource_arn
        self._secret_arn = secret_arn
        self._database = database
        self._client = client
        self._client_factory = client_factory
        self._retry = retry or StatementRetry()
        self._sleep = sleep

    @property
    def dialect(self) -> str:
        return POSTGRESQL

    @property
    def client(self) -> RDSDataServiceClient:
        # Built on first use, so constructing the executor at start costs nothing.
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        parameters = [to_data_api_parameter(n, v) for n, v in (params or {}).items()]
        retry = 0
        while True:
            try:
                response = self.client.execute_statement(
                    resourceArn=self._resource_arn,
                    secretArn=self._secret_arn,
                    database=self._database,
                    sql=sql,
                    parameters=parameters,
                    includeResultMetadata=True,
                )
                break
            except ClientError as error:
                if not is_transient_data_api_error(error):
                    raise self._translate(error) from error
                retry += 1
                if retry >= self._retry.max_attempts:
                    raise SqlUnavailable(
                        f"Data API still unavailable after {retry} attempts: "
                        f"{_error_code(error)}: {_error_message(error)}"
                    ) from error
                self._sleep(self._retry.delay(retry))
        columns = response.get("columnMetadata", [])
        labels = [c.get("label") or c.get("name", f"col{i}") for i, c in enumerate(columns)]
        return [
            {
                label: from_data_api_field(field, column)
                for label, field, column in zip(labels, record, columns, strict=True)
            }
            for record in response.get("records", [])
        ]

    @staticmethod
    def _translate(error: ClientError) -> SqlError:
        code, message = _error_code(error), _error_message(error)
        state = _SQLSTATE.search(message)
        if state and state.group(1).startswith(_INTEGRITY_SQLSTATE_CLASS):
            return IntegrityViolation(message)
        return SqlError(f"{code}: {message}")


# ----------------------------------------------------------------------------- settings


def executor_from_settings(
    settings: LedgerSettings, client: RDSDataServiceClient | None = None
) -> SqlExecutor:
    """The Data API when a cluster is configured, otherwise the SQLAlchemy URL."""
    if bool(settings.cluster_arn) != bool(settings.secret_arn):
        raise SettingsError("LedgerSettings: DB_CLUSTER_ARN and DB_SECRET_ARN go together")
    if settings.cluster_arn:
        return DataApiExecutor(settings.cluster_arn, settings.secret_arn, settings.database, client)
    if settings.database_url:
        return SqlAlchemyExecutor.from_url(settings.database_url)
    raise SettingsError("LedgerSettings: no ledger database configured")
