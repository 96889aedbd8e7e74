"""Apply db/migrations/*.sql to the ledger database, in name order, each once.

    python -m nfse_core.store.migrate --database-url sqlite:///.local/ledger.db
    python -m nfse_core.store.migrate --resource-arn ARN --secret-arn ARN --database nfse \
        --app-secret-arn ARN

Without flags it reads DATABASE_URL or DB_CLUSTER_ARN/DB_SECRET_ARN/DB_NAME (and
DB_APP_SECRET_ARN). Migrations run as the admin (the cluster's master secret). With an app
secret, `{"username": "nfse_app", "password": ...}`, the command then sets the password of the
application role that 0002_app_role.sql creates, so the components that write the ledger can
sign in with that secret (docs/security.md). The same files serve PostgreSQL and SQLite; the few
SQLite differences are adapted here.

The deploy runs the same steps (`migrate_for_deploy`, called by functions/migrate, the
LedgerMigrations custom resource) whenever `migrations_digest()` changes; `--digest` prints it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from nfse_core.config import LedgerSettings, MigrateSettings, SettingsError
from nfse_core.domain.invoice import utc_now
from nfse_core.store.sql_executors import (
    POSTGRESQL,
    SQLITE,
    DataApiExecutor,
    SqlAlchemyExecutor,
    SqlError,
    SqlExecutor,
    StatementRetry,
    executor_from_settings,
)

if TYPE_CHECKING:
    from mypy_boto3_rds_data.client import RDSDataServiceClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "db" / "migrations"

# Runs before anything else, every time (idempotent): the runner needs its bookkeeping table
# to know what is applied. Over the Data API there is no transaction around a file, so files
# are written re-runnable and a version is recorded only after all its statements ran.
BOOTSTRAP_SQL = """
CREATE SCHEMA IF NOT EXISTS nfse;
CREATE TABLE IF NOT EXISTS nfse.schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL
);
"""
APPLIED_SQL = "SELECT version, checksum FROM nfse.schema_migrations"
RECORD_SQL = (
    "INSERT INTO nfse.schema_migrations (version, checksum, applied_at)"
    " VALUES (:version, :checksum, :applied_at) ON CONFLICT (version) DO NOTHING"
)

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CREATE_SCHEMA = re.compile(r"^\s*CREATE\s+SCHEMA\b", re.IGNORECASE)
# PostgreSQL: CREATE INDEX name ON schema.table; SQLite: CREATE INDEX schema.name ON table.
_CREATE_INDEX = re.compile(
    r"^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?)(\w+)(\s+ON\s+)(\w+)\.(\w+)",
    re.IGNORECASE,
)
# Access control: SQLite has no roles and no privileges, so these statements have no meaning
# there and are skipped. DO runs PL/pgSQL, which SQLite lacks; migrations use it only for access
# control (CREATE ROLE has no IF NOT EXISTS), never to shape the schema both dialects share,
# which would leave SQLite behind.
_ACCESS_CONTROL = re.compile(
    r"^\s*(?:GRANT|REVOKE|DO|(?:CREATE|ALTER|DROP)\s+(?:ROLE|USER|GROUP))\b", re.IGNORECASE
)

# The role 0002_app_role.sql creates; the app secret must name it (see read_app_credentials).
APP_ROLE = "nfse_app"
APP_SECRET_ENV = "DB_APP_SECRET_ARN"  # noqa: S105 (the variable's name, not a secret)
_MIN_PASSWORD = 16
_MAX_PASSWORD = 1024
# PostgreSQL's own default (scram_iterations), what libpq and psql use.
_SCRAM_ITERATIONS = 4096
# Written as they are in a literal: they mean nothing to SQLAlchemy's `:name` binding, the
# Data API's parameter parsing, psycopg's `%` or PostgreSQL's quoting. Everything else in a
# literal is a \xNN escape.
_LITERAL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-")


class MigrationError(RuntimeError):
    """A migration file is malformed, or was changed after it was applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every `NNNN_name.sql` in `directory`, in order; any other .sql file is an error."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if not _FILE_NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        migrations.append(Migration(path.stem, path, path.read_text(encoding="utf-8")))
    return migrations


def split_statements(sql: str) -> list[str]:
    """Statements of a script, comments dropped; `;` inside quotes does not split."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == char:
                    if end + 1 < n and sql[end + 1] == char:  # doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            if end >= n:
                raise MigrationError("unterminated quoted text")
            current.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise MigrationError("unterminated block comment")
            current.append(" ")
            i = end + 2
        elif char == "$" and re.match(r"\$\w*\$", sql[i:]):
            raise MigrationError("dollar-quoted bodies are not supported (SQLite has none)")
        elif char == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def adapt_statement(statement: str, dialect: str) -> str | None:
    """The statement as `dialect` needs it, or None when it has no meaning there."""
    if dialect != SQLITE:
        return statement
    if _CREATE_SCHEMA.match(statement):
        return None  # the executor ATTACHes the schema's database file
    if _ACCESS_CONTROL.match(statement):
        return None  # no roles in SQLite (the local stack's SQLite ledger has one principal)
    return _CREATE_INDEX.sub(r"\1\4.\2\3\5", statement, count=1)


def _run_script(executor: SqlExecutor, sql: str) -> None:
    for statement in split_statements(sql):
        adapted = adapt_statement(statement, executor.dialect)
        if adapted is not None:
            executor.execute(adapted)


def migrations_digest(directory: Path = MIGRATIONS_DIR) -> str:
    """One sha256 over the migration files' names and bytes, in order: template.yaml's
    `MigrationsDigest` of LedgerMigrations, so adding or changing a file makes the deploy run
    the migrations again. The same value as `(cd db/migrations && sha256sum *.sql) | sha256sum`.
    """
    listing = "".join(
        f"{hashlib.sha256(m.path.read_bytes()).hexdigest()}  {m.path.name}\n"
        for m in load_migrations(directory)
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def migrate(
    executor: SqlExecutor,
    directory: Path = MIGRATIONS_DIR,
    clock: Callable[[], datetime] = utc_now,
) -> list[str]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    migrations = load_migrations(directory)
    _run_script(executor, BOOTSTRAP_SQL)
    applied = {str(r["version"]): str(r["checksum"]) for r in executor.execute(APPLIED_SQL)}
    done: list[str] = []
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"{migration.path.name} changed after it was applied; add a new migration"
                )
            continue
        _run_script(executor, migration.sql)
        executor.execute(
            RECORD_SQL,
            {"version": migration.version, "checksum": migration.checksum, "applied_at": clock()},
        )
        done.append(migration.version)
    return done


# ----------------------------------------------------------------- the application role


class SecretReader(Protocol):
    """What is read of Secrets Manager: boto3's client, or a stand-in in tests."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """The application role's sign-in, as the app secret holds it; never printed."""

    username: str
    password: str = field(repr=False)


def read_app_credentials(client: SecretReader, secret_arn: str) -> AppCredentials:
    """The app secret, `{"username": "nfse_app", "password": ...}`, checked.

    The username must be APP_ROLE: the command then sets that role's password, so a wrong
    secret (the master secret, say) must not change another role's. Errors never quote the
    secret's content.
    """
    return AppSecret(client, secret_arn).credentials()


class AppSecret:
    """The application role's secret in Secrets Manager (read_app_credentials)."""

    def __init__(self, client: SecretReader, secret_arn: str) -> None:
        self._client = client
        self._secret_arn = secret_arn

    def credentials(self) -> AppCredentials:
        """Read and checked; see read_app_credentials."""
        secret_arn = self._secret_arn
        try:
            answer = self._client.get_secret_value(SecretId=secret_arn)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise MigrationError(f"cannot read the app secret {secret_arn}: {code}") from None
        except BotoCoreError as error:
            raise MigrationError(f"cannot read the app secret {secret_arn}: {error}") from None
        return _checked_credentials(answer, secret_arn)


def _checked_credentials(answer: Mapping[str, Any], secret_arn: str) -> AppCredentials:
    try:
        data = json.loads(answer.get("SecretString") or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise MigrationError(
            f"{secret_arn}: the app secret must be a JSON object with username and password"
        )
    if data.get("username") != APP_ROLE:
        raise MigrationError(f"{secret_arn}: the app secret's username must be {APP_ROLE!r}")
    password = data.get("password")
    problem = _password_problem(password)
    if problem:
        raise MigrationError(f"{secret_arn}: the app secret's password must be {problem}")
    return AppCredentials(APP_ROLE, str(password))


def _password_problem(password: object) -> str:
    """What is wrong with `password` (never quoting it), or "" when it will do."""
    if not isinstance(password, str) or not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        return f"a string of {_MIN_PASSWORD} to {_MAX_PASSWORD} characters"
    # Printable ASCII: SASLprep leaves it as it is, so the verifier computed here matches what
    # any SCRAM client (the Data API's, libpq) derives from the same password.
    if not all(" " <= char <= "~" for char in password):
        return "printable ASCII"
    return ""


def scram_sha_256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """PostgreSQL's stored form of `password` (RFC 5802/7677), as libpq's
    PQencryptPasswordConn computes it: the server keeps it as given and never sees the
    password itself, so the password cannot reach its logs."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def sql_string_literal(text: str) -> str:
    """`text` as a PostgreSQL escape-string literal (E'...') for a statement that cannot take
    bind parameters (ALTER ROLE over the Data API). Only letters, digits and `+/=-` are written
    as they are; every other character is a \\xNN escape, so the literal holds no quote,
    backslash, colon (a `:name` parameter to SQLAlchemy and the Data API) or percent sign."""
    if not text.isascii():
        raise ValueError("sql_string_literal: ASCII text only")
    body = "".join(c if c in _LITERAL_SAFE else f"\\x{ord(c):02x}" for c in text)
    return f"E'{body}'"


def set_app_role_password(executor: SqlExecutor, credentials: AppCredentials) -> None:
    """Give APP_ROLE the password of `credentials`; run as the admin, after the migrations.

    Idempotent: running it again leaves the role with the same password (a new salt, the same
    secret), so the command can run on every deploy and after each rotation of the secret.
    """
    if executor.dialect != POSTGRESQL:
        raise MigrationError(f"{executor.dialect} has no roles: the app secret needs PostgreSQL")
    if credentials.username != APP_ROLE:
        raise MigrationError(f"the application role is {APP_ROLE!r}")
    problem = _password_problem(credentials.password)
    if problem:
        raise MigrationError(f"the password of role {APP_ROLE} must be {problem}")
    verifier = scram_sha_256_verifier(credentials.password)
    # No bind parameters in ALTER ROLE (the Data API sends none to a utility statement).
    statement = f"ALTER ROLE {APP_ROLE} PASSWORD {sql_string_literal(verifier)}"
    try:
        executor.execute(statement)
    except SqlError as error:
        # The database's message names no password; the chained driver error may quote the
        # statement (SQLAlchemy does), so it is left out.
        raise MigrationError(f"could not set the password of role {APP_ROLE}: {error}") from None


def default_secretsmanager_client(secret_arn: str) -> SecretsManagerClient:
    """A Secrets Manager client in the secret's own region (an ARN names it)."""
    parts = secret_arn.split(":")
    region = parts[3] if len(parts) > 6 and parts[0] == "arn" and parts[3] else None
    return boto3.client("secretsmanager", region_name=region)


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    # botocore logs response bodies at DEBUG: GetSecretValue's would hold the password.
    logger = logging.getLogger("botocore")
    level = logger.level
    logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        logger.setLevel(level)


# ------------------------------------------------------------------- the deploy (MigrateFn)

# MigrateFn waits out an Aurora resume (a cluster paused at 0 ACU takes 30 s and more) within
# its own time: the caller's `sleep` raises once the custom resource's deadline is near, so the
# deadline, not this count, ends the retries.
DEPLOY_RETRY = StatementRetry(max_attempts=100, base_delay=1.0, max_delay=10.0)


def migrate_for_deploy(
    settings: MigrateSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rds_data: RDSDataServiceClient | None = None,
    secrets: SecretReader | None = None,
    directory: Path = MIGRATIONS_DIR,
) -> list[str]:
    """The command's steps, run by the deploy (functions/migrate): returns the versions applied.

    The app secret (DB_APP_SECRET_ARN, optional) is read and checked first, so a wrong one
    changes nothing; then the migrations run as the admin (DB_SECRET_ARN is the cluster's master
    secret); then nfse_app gets the app secret's password. Over the Data API a transient error
    (DatabaseResumingException while a paused cluster resumes) is retried with `sleep` between
    attempts. Idempotent, as the command: a second run applies nothing and sets the same password.
    """
    executor: SqlExecutor
    if settings.cluster_arn:
        executor = DataApiExecutor(
            settings.cluster_arn,
            settings.secret_arn,
            settings.database,
            rds_data,
            retry=DEPLOY_RETRY,
            sleep=sleep,
        )
    else:
        executor = executor_from_settings(settings)
    try:
        credentials = None
        if settings.app_secret_arn:
            if executor.dialect != POSTGRESQL:
                raise MigrationError(
                    f"{executor.dialect} has no roles: the app secret needs PostgreSQL"
                )
            with _botocore_quiet():
                reader = secrets or default_secretsmanager_client(settings.app_secret_arn)
                credentials = AppSecret(reader, settings.app_secret_arn).credentials()
        applied = migrate(executor, directory)
        if credentials is not None:
            set_app_role_password(executor, credentials)
    finally:
        if isinstance(executor, SqlAlchemyExecutor):
            executor.engine.dispose()  # the function's process stays: no admin connection kept
    return applied


# ------------------------------------------------------------------------------ command


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfse_core.store.migrate", description=__doc__)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL)")
    parser.add_argument("--resource-arn", help="Aurora cluster ARN (default: $DB_CLUSTER_ARN)")
    parser.add_argument(
        "--secret-arn",
        help="the admin's (master) secret for the Data API (default: $DB_SECRET_ARN)",
    )
    parser.add_argument("--database", help="database name (default: $DB_NAME or nfse)")
    parser.add_argument(
        "--app-secret-arn",
        help=f"secret of the application role {APP_ROLE}, whose password is set after the"
        f" migrations (default: ${APP_SECRET_ENV}; PostgreSQL only)",
    )
    parser.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR)
    parser.add_argument(
        "--digest",
        action="store_true",
        help="print the MigrationsDigest of --migrations-dir (template.yaml's LedgerMigrations)"
        " and exit",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parse_args(argv)
    if args.digest:
        print(migrations_digest(args.migrations_dir))
        return 0
    env = dict(os.environ if environ is None else environ)
    if args.database_url:
        # An explicit URL wins over a cluster configured in the environment.
        env["DATABASE_URL"] = args.database_url
        for name in ("DB_CLUSTER_ARN", "DB_SECRET_ARN", APP_SECRET_ENV):
            env.pop(name, None)
    for flag, name in (
        (args.resource_arn, "DB_CLUSTER_ARN"),
        (args.secret_arn, "DB_SECRET_ARN"),
        (args.database, "DB_NAME"),
        (args.app_secret_arn, APP_SECRET_ENV),
    ):
        if flag:
            env[name] = flag
    app_secret_arn = env.get(APP_SECRET_ENV, "")
    try:
        executor = executor_from_settings(LedgerSettings.from_env(env))
    except SettingsError as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 2
    credentials = None
    if app_secret_arn:
        # Read and checked before anything changes: a wrong secret stops the command early.
        try:
            if executor.dialect != POSTGRESQL:
                raise MigrationError("SQLite has no roles: --app-secret-arn needs PostgreSQL")
            with _botocore_quiet():
                client = default_secretsmanager_client(app_secret_arn)
                credentials = read_app_credentials(client, app_secret_arn)
        except MigrationError as error:
            print(f"migrate: {error}", file=sys.stderr)
            return 2
    applied = migrate(executor, args.migrations_dir)
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    if credentials is not None:
        try:
            set_app_role_password(executor, credentials)
        except MigrationError as error:
            print(f"migrate: {error}", file=sys.stderr)
            return 1
        print(f"role {APP_ROLE}: password set from {app_secret_arn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
