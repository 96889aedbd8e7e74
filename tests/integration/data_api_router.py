"""Route a real boto3 `rds-data` client's ExecuteStatement calls to a local PostgreSQL.

moto does not execute Data API SQL, so this stands in for the service at the HTTP layer:
a botocore `before-send` handler takes the serialized request, runs its SQL with psycopg
(parameters typed as the Data API types them, honouring typeHint: a stringValue without a
hint reaches PostgreSQL as varchar, just as it does in AWS) and answers with the JSON the
Data API sends (typed fields, columnMetadata with typeName). Faults can be injected.

    router = DataApiRouter(conninfo)
    client = router.client()            # or router.attach(existing_client)
    router.inject("DatabaseResumingException", times=2)

Who signs in: a call names a secret (`secretArn`), as it does in AWS. By default every call
signs in as `conninfo`'s user, the admin (the cluster's master secret). `secrets` (ARN ->
SecretString) adds other principals, e.g. the application role: a call with one of those ARNs
signs in as the secret's username, once its password checks out against the role's stored SCRAM
verifier (the test server trusts 127.0.0.1; the Data API signs in with the password).

Also here: `scratch_database()`, a throwaway PostgreSQL database for a test session, on the
suite's server (`admin_conninfo()`: the configured one, else an embedded one, see nfse_local/pg.py),
and `scram_verifies()`, which checks a password against a stored SCRAM-SHA-256 verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
import psycopg
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config
from psycopg import sql as pgsql

from nfse_local import pg
from nfse_local.pg import PG_START

if TYPE_CHECKING:
    from mypy_boto3_rds_data.client import RDSDataServiceClient

_HINT_CASTS = {
    "DECIMAL": "numeric",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
    "TIME": "time",
    "UUID": "uuid",
    "JSON": "jsonb",
}
_TIMESTAMP_HINT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})?$")
# JDBC type numbers, as the Data API reports them in columnMetadata.type.
_JDBC_TYPES = {
    "bool": -7,
    "int2": 5,
    "int4": 4,
    "int8": -5,
    "numeric": 2,
    "float4": 7,
    "float8": 8,
    "text": 12,
    "varchar": 12,
    "bpchar": 1,
    "date": 91,
    "time": 92,
    "timestamp": 93,
    "timestamptz": 93,
    "bytea": -2,
}


def admin_conninfo() -> str:
    """The suite's PostgreSQL server (admin conninfo): the configured one (LEDGER_TEST_PG,
    DATABASE_URL, else 127.0.0.1:5432) when it answers, else a throwaway embedded server started
    for this test session. Fails the caller, never skips it, when neither can be had."""
    try:
        return pg.admin_conninfo()
    except pg.PostgresUnavailable as error:
        message = str(error)
    # Failed outside the except block: the message alone, not the traceback before it.
    pytest.fail(message, pytrace=False)


def postgres_available(conninfo: str) -> bool:
    return pg.reachable(conninfo)


def require_postgres(conninfo: str | None = None) -> str:
    """Fails the calling test or fixture, never skips it, when PostgreSQL cannot be had; returns
    the admin conninfo. Without `conninfo`, the suite's server (`admin_conninfo()`); with one,
    exactly that server.

    The ledger tests are part of `make test`: without a server, CI must go red with the fix in
    the message, not green with the ledger untested.
    """
    if conninfo is None:
        return admin_conninfo()
    reason = pg.unreachable_reason(conninfo)
    if reason is None:
        return conninfo
    pytest.fail(
        f"PostgreSQL is not reachable on {pg.where(conninfo)} ({reason}). The ledger tests need "
        f"it: start it with `{PG_START}`, or point LEDGER_TEST_PG at a running server.",
        pytrace=False,
    )


@contextmanager
def scratch_database(admin_conninfo: str | None = None, prefix: str = "ledger") -> Iterator[str]:
    """A new, empty database for one test session (its conninfo); dropped afterwards.

    Its own database keeps parallel runs and other suites off each other's `nfse` schema.
    On the suite's server by default; a server that cannot be had fails the test
    (`require_postgres`).
    """
    admin_conninfo = require_postgres(admin_conninfo)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(admin_conninfo)
    params["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


def scram_verifies(verifier: str | None, password: str) -> bool:
    """Whether `password` is the one PostgreSQL stored as `verifier` (pg_authid.rolpassword,
    `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802/7677)."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if match is None:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(
        hashlib.sha256(client_key).digest(), base64.b64decode(stored_key)
    ) and hmac.compare_digest(
        hmac.new(salted, b"Server Key", hashlib.sha256).digest(), base64.b64decode(server_key)
    )


def sqlalchemy_url(conninfo: str) -> str:
    """The `postgresql+psycopg://` URL of a libpq conninfo string."""
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = p.get("user", "postgres")
    return (
        f"postgresql+psycopg://{user}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}"
        f"/{p['dbname']}"
    )


@dataclass
class _Fault:
    code: str
    message: str
    status: int
    times: int


class _Body:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._payload


def _format_timestamp(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{value.microsecond:06d}".rstrip("0") if value.microsecond else text


def _field(value: Any) -> dict[str, Any]:
    """A Python value from psycopg as the Data API's Field."""
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Decimal):
        return {"stringValue": str(value)}
    if isinstance(value, datetime):
        return {"stringValue": _format_timestamp(value)}
    if isinstance(value, date | time):
        return {"stringValue": value.isoformat()}
    if isinstance(value, bytes | memoryview):
        return {"blobValue": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict | list):
        return {"stringValue": json.dumps(value)}
    return {"stringValue": str(value)}


class DataApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def translate_sql(statement: str, parameters: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`:name` -> `%(name)s::type` (the type the Data API gives the parameter) and its values."""
    by_name = {p["name"]: p for p in parameters}
    values: dict[str, Any] = {}
    out: list[str] = []
    i, n = 0, len(statement)
    while i < n:
        char = statement[i]
        if char in ("'", '"'):
            end = statement.find(char, i + 1)
            end = n - 1 if end < 0 else end
            out.append(statement[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif statement.startswith("::", i):
            out.append("::")
            i += 2
        elif char == ":" and (match := re.match(r":([A-Za-z_]\w*)", statement[i:])):
            name = match.group(1)
            if name not in by_name:
                raise DataApiError(
                    "BadRequestException", f"No value specified for parameter {name}"
                )
            cast, value = _typed(by_name[name])
            values[name] = value
            out.append(f"%({name})s" + (f"::{cast}" if cast else ""))
            i += len(match.group(0))
        elif char == "%":
            out.append("%%")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out), values


def _typed(param: dict[str, Any]) -> tuple[str | None, Any]:
    field, hint = param.get("value", {}), param.get("typeHint")
    if field.get("isNull"):
        return None, None
    if "booleanValue" in field:
        return "bool", field["booleanValue"]
    if "longValue" in field:
        return "int8", field["longValue"]
    if "doubleValue" in field:
        return "float8", field["doubleValue"]
    if "blobValue" in field:
        return "bytea", base64.b64decode(field["blobValue"])
    if "stringValue" in field:
        text = field["stringValue"]
        if hint == "TIMESTAMP" and not _TIMESTAMP_HINT.match(text):
            raise DataApiError(
                "BadRequestException",
                f"Timestamp format must be yyyy-mm-dd hh:mm:ss[.fffffffff], got {text}",
            )
        return _HINT_CASTS.get(hint, "varchar") if hint else "varchar", text
    raise DataApiError("BadRequestException", f"unsupported parameter {param!r}")


class DataApiRouter:
    """Answers rds-data ExecuteStatement from a PostgreSQL database (see module docstring)."""

    def __init__(self, conninfo: str, secrets: Mapping[str, str] | None = None) -> None:
        self.conninfo = conninfo
        self.secrets = dict(secrets or {})
        self.calls: list[dict[str, Any]] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()

    def client(self) -> RDSDataServiceClient:
        """A real client (dummy credentials, botocore retries off) routed here."""
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client = session.client(
            "rds-data",
            endpoint_url="https://rds-data.us-east-1.amazonaws.com",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        self.attach(client)
        return client

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.rds-data.ExecuteStatement", self._handle)
        self._service_model = client.meta.service_model

    def route(self, session: boto3.session.Session) -> None:
        """Route every rds-data client `session` makes from now on: for code that builds its
        own client (a handler's lazily built default client, from boto3's default session)."""
        events: Any = session.events  # botocore types a before-send handler as returning None
        events.register("before-send.rds-data.ExecuteStatement", self._handle)
        self._service_model = session.client("rds-data", region_name="us-east-1").meta.service_model

    def inject(self, code: str, message: str = "injected", *, times: int = 1) -> None:
        """Answer the next `times` calls with this error, before running any SQL."""
        try:
            shape = self._service_model.shape_for(code)
            status = int(shape.metadata["error"]["httpStatusCode"])
        except Exception:  # not a modelled error (ThrottlingException is a common one)
            status = 400
        with self._lock:
            self._faults.append(_Fault(code, message, status, times))

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault

    def _handle(self, request: Any, **_: Any) -> AWSResponse:
        body = json.loads(request.body or b"{}")
        self.calls.append(body)
        fault = self._next_fault()
        try:
            if fault is not None:
                raise DataApiError(fault.code, fault.message, fault.status)
            answer = self._execute(body)
        except DataApiError as error:
            return self._response(
                request.url, error.status, {"message": error.message}, error_type=error.code
            )
        return self._response(request.url, 200, answer)

    def _execute(self, body: dict[str, Any]) -> dict[str, Any]:
        query, values = translate_sql(body["sql"], body.get("parameters", []))
        conninfo = self._sign_in(body.get("secretArn", ""))
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("SET TIME ZONE 'UTC'")  # the Data API's session time zone
                cursor = conn.execute(query.encode(), values)
                answer: dict[str, Any] = {"numberOfRecordsUpdated": 0}
                if cursor.description is None:
                    answer["numberOfRecordsUpdated"] = max(cursor.rowcount, 0)
                    answer["generatedFields"] = []
                    return answer
                if not (cursor.statusmessage or "").startswith("SELECT"):
                    answer["numberOfRecordsUpdated"] = max(cursor.rowcount, 0)
                answer["records"] = [[_field(v) for v in row] for row in cursor.fetchall()]
                if body.get("includeResultMetadata"):
                    answer["columnMetadata"] = [self._column(conn, c) for c in cursor.description]
                return answer
        except psycopg.Error as error:
            diag = error.diag
            message = f"ERROR: {diag.message_primary or error}"
            if diag.message_detail:
                message += f"\n  Detail: {diag.message_detail}"
            raise DataApiError(
                "BadRequestException", f"{message}; SQLState: {diag.sqlstate}"
            ) from error

    def _sign_in(self, secret_arn: str) -> str:
        """The conninfo of the principal `secret_arn` names (see the module docstring)."""
        if secret_arn not in self.secrets:
            return self.conninfo
        try:
            secret = json.loads(self.secrets[secret_arn])
            user, password = str(secret["username"]), str(secret["password"])
        except (ValueError, KeyError, TypeError):
            raise DataApiError(
                "BadRequestException", f"The secret {secret_arn} has no username and password"
            ) from None
        with psycopg.connect(self.conninfo) as admin:
            row = admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s AND rolcanlogin", (user,)
            ).fetchone()
        if row is None or not scram_verifies(row[0], password):
            raise DataApiError(
                "BadRequestException",
                f'FATAL: password authentication failed for user "{user}"; SQLState: 28P01',
            )
        params = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        params.update(user=user, password=password)
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    @staticmethod
    def _column(conn: psycopg.Connection[Any], column: Any) -> dict[str, Any]:
        info = conn.adapters.types.get(column.type_code)
        type_name = info.name if info is not None else "unknown"
        meta: dict[str, Any] = {
            "name": column.name,
            "label": column.name,
            "typeName": type_name,
            "type": _JDBC_TYPES.get(type_name, 1111),  # 1111: JDBC OTHER
            "nullable": 2,  # columnNullableUnknown, as the Data API reports expressions
            "isSigned": type_name in ("int2", "int4", "int8", "numeric", "float4", "float8"),
            "isCaseSensitive": type_name in ("text", "varchar", "bpchar"),
            "isCurrency": False,
            "isAutoIncrement": False,
            "arrayBaseColumnType": 0,
            "schemaName": "",
            "tableName": "",
        }
        if column.precision is not None:
            meta["precision"] = column.precision
        if column.scale is not None:
            meta["scale"] = column.scale
        return meta

    @staticmethod
    def _response(
        url: str, status: int, payload: dict[str, Any], *, error_type: str | None = None
    ) -> AWSResponse:
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
        if error_type:
            headers["x-amzn-ErrorType"] = error_type
        # AWSResponse wraps any mapping in HeadersDict; the stubs name only HTTPHeaders.
        raw = _Body(json.dumps(payload).encode())
        return AWSResponse(url, status, cast("HTTPHeaders", headers), raw)
