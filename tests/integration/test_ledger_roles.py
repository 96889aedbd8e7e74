"""The ledger's two principals on the real PostgreSQL (the suite's server, nfse_local/pg.py).

Migrations run as the admin; the worker and ProcessorFn run as nfse_app
(db/migrations/0002_app_role.sql), whose password `python -m nfse_core.store.migrate
--app-secret-arn` sets from the app secret. These tests fail, never skip, without PostgreSQL.

Roles belong to the whole server, not to a scratch database: the module leaves nfse_app as it
found it (dropped if it created it, its stored password put back otherwise), after its own
databases are gone. The server trusts 127.0.0.1, so a sign-in proves nothing about a password:
passwords are checked against the role's stored SCRAM verifier instead, and so does the Data
API router for a secret it is given.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import sql as pgsql
from sqlalchemy.engine import make_url

from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.ledger import Ledger, LedgerRow
from nfse_core.store.migrate import (
    APP_ROLE,
    MIGRATIONS_DIR,
    AppCredentials,
    MigrationError,
    adapt_statement,
    load_migrations,
    main,
    migrate,
    read_app_credentials,
    scram_sha_256_verifier,
    set_app_role_password,
    split_statements,
    sql_string_literal,
)
from nfse_core.store.sql_executors import DataApiExecutor, SqlAlchemyExecutor, SqlError
from nfse_local.stack import LocalStack, StackOptions
from tests.integration.data_api_router import (
    DataApiRouter,
    admin_conninfo,
    require_postgres,
    scram_verifies,
    scratch_database,
    sqlalchemy_url,
)

pytestmark = pytest.mark.integration

REGION = "us-east-1"
CLUSTER = "arn:aws:rds:us-east-1:123456789012:cluster:ledger"
ADMIN_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ledger-admin-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ledger-app-GhIjKl"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
INSUFFICIENT_PRIVILEGE = "42501"


# ------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class AppSecret:
    """The app secret as Secrets Manager would hold it: what the test compares against."""

    password: str

    @property
    def text(self) -> str:
        return json.dumps({"username": APP_ROLE, "password": self.password})


class FakeSecrets:
    """A SecretReader for the Data API tests: moto would answer rds-data calls itself."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:
        return {"SecretString": self.values[SecretId]}


def admin() -> psycopg.Connection[Any]:
    return psycopg.connect(admin_conninfo(), autocommit=True)


def stored_verifier(role: str = APP_ROLE) -> str | None:
    with admin() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        found = row.fetchone()
    return None if found is None else found[0]


def as_role(conninfo: str, role: str, password: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params.update(user=role, password=password)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def app_url(conninfo: str, password: str) -> str:
    url = make_url(sqlalchemy_url(conninfo)).set(username=APP_ROLE, password=password)
    return url.render_as_string(hide_password=False)


def row(invoice_id: str, numero: int) -> LedgerRow:
    return LedgerRow(
        invoice_id=invoice_id,
        tenant="acme",
        cnpj="11222333000181",
        total=Decimal("1500.00"),
        status=InvoiceStatus.EMITTED,
        created_at=T0,
        municipio="3550308",
        rps_numero=numero,
        rps_serie="1",
        rps_tipo=1,
        xml_key=f"xml/{invoice_id}.xml",
    )


def issued(emitted: LedgerRow) -> LedgerRow:
    return replace(
        emitted,
        status=InvoiceStatus.ISSUED,
        nfse_number="2026000001",
        verification_code="ABC123",
        nfse_key=f"nfse/{emitted.invoice_id}.xml",
        processed_at=T0 + timedelta(minutes=1),
    )


def run_command(
    argv: list[str], secret_values: dict[str, str], environ: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The command as an operator runs it: (exit code, stdout, stderr). The secrets are made in
    (moto's) Secrets Manager first; a secret's name in `argv` or `environ` becomes its ARN."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        client = boto3.client("secretsmanager", region_name=REGION)
        arns = {
            name: client.create_secret(Name=name, SecretString=value)["ARN"]
            for name, value in secret_values.items()
        }
        env = {k: arns.get(v, v) for k, v in (environ or {}).items()}
        with redirect_stdout(out), redirect_stderr(err):
            code = main([arns.get(arg, arg) for arg in argv], environ=env)
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app_role_left_as_found() -> Iterator[None]:
    """Undo what the module does to the server-wide role (see the module docstring)."""
    require_postgres()  # fails (never skips) with the command that starts the server
    with admin() as conn:
        found = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_ROLE,)
        ).fetchone()
    yield
    with admin() as conn:
        if found is None:
            # Another session's database may hold grants to it by now: theirs to keep.
            with contextlib.suppress(psycopg.errors.DependentObjectsStillExist):
                conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(APP_ROLE)))
            return
        password = pgsql.NULL if found[0] is None else pgsql.Literal(found[0])
        with contextlib.suppress(psycopg.errors.UndefinedObject):
            conn.execute(
                pgsql.SQL("ALTER ROLE {} PASSWORD {}").format(pgsql.Identifier(APP_ROLE), password)
            )


@pytest.fixture(scope="module")
def app_secret() -> AppSecret:
    return AppSecret(secrets.token_urlsafe(30))


@dataclass(frozen=True)
class Migrated:
    conninfo: str  # the admin's
    admin_url: str
    output: str


@pytest.fixture(scope="module")
def migrated(app_role_left_as_found: None, app_secret: AppSecret) -> Iterator[Migrated]:
    """A scratch database migrated by the command with an app secret."""
    del app_role_left_as_found  # set up first, so it runs after the database is dropped
    with scratch_database(prefix="roles") as conninfo:
        url = sqlalchemy_url(conninfo)
        code, out, err = run_command(
            ["--database-url", url, "--app-secret-arn", "app"], {"app": app_secret.text}
        )
        assert code == 0, err
        yield Migrated(conninfo, url, out + err)


@pytest.fixture
def app_conn(migrated: Migrated, app_secret: AppSecret) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        as_role(migrated.conninfo, APP_ROLE, app_secret.password), autocommit=True
    ) as conn:
        yield conn


@pytest.fixture
def admin_executor(migrated: Migrated) -> Iterator[SqlAlchemyExecutor]:
    executor = SqlAlchemyExecutor.from_url(migrated.admin_url)
    executor.execute("DELETE FROM nfse.invoices")  # the admin may; nfse_app may not
    yield executor
    executor.engine.dispose()


@pytest.fixture
def app_password_current(migrated: Migrated, app_secret: AppSecret) -> Iterator[None]:
    """The module's secret holds as the role's password, before the test and after it: the
    test may change it, and so may another run's local stack on this server at any time."""

    def set_it() -> None:
        executor = SqlAlchemyExecutor.from_url(migrated.admin_url)
        try:
            set_app_role_password(executor, AppCredentials(APP_ROLE, app_secret.password))
        finally:
            executor.engine.dispose()

    set_it()
    yield
    set_it()


# ------------------------------------------------------------ what the app role may do


def test_the_app_role_runs_the_ledger(
    migrated: Migrated, app_secret: AppSecret, admin_executor: SqlAlchemyExecutor
) -> None:
    executor = SqlAlchemyExecutor.from_url(app_url(migrated.conninfo, app_secret.password))
    try:
        assert executor.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]
        ledger = Ledger(executor)
        first = row("01JROLE000000000000000001", 1)
        assert ledger.upsert(first) is True  # INSERT ... RETURNING
        assert ledger.upsert(issued(first)) is True  # ON CONFLICT DO UPDATE (forward)
        assert ledger.upsert(issued(first)) is False  # the WHERE refuses: nothing to change
        stored = ledger.get(first.invoice_id)
        assert stored is not None and stored.status is InvoiceStatus.ISSUED
        assert stored.nfse_number == "2026000001"
        assert [r.invoice_id for r in ledger.list_by_status(InvoiceStatus.ISSUED)] == [
            first.invoice_id
        ]
    finally:
        executor.engine.dispose()


REFUSED = [
    "DELETE FROM nfse.invoices",
    "TRUNCATE nfse.invoices",
    "DROP TABLE nfse.invoices",
    "ALTER TABLE nfse.invoices ADD COLUMN extra text",
    "CREATE INDEX invoices_extra_idx ON nfse.invoices (tenant)",
    "CREATE TABLE nfse.extra (a int)",
    "CREATE TABLE public.extra (a int)",
    "CREATE SCHEMA extra",
    "CREATE ROLE extra_role",
    "SELECT version FROM nfse.schema_migrations",
    "INSERT INTO nfse.schema_migrations VALUES ('9999_extra', 'x', now())",
    "UPDATE nfse.schema_migrations SET checksum = 'x'",
    "DELETE FROM nfse.schema_migrations",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_app_role_is_refused_anything_else(
    statement: str,
    app_conn: psycopg.Connection[Any],
    admin_executor: SqlAlchemyExecutor,
    app_secret: AppSecret,
    migrated: Migrated,
) -> None:
    Ledger(admin_executor).upsert(row("01JROLE000000000000000002", 2))
    versions = admin_executor.execute("SELECT version, checksum FROM nfse.schema_migrations")
    with pytest.raises(psycopg.Error) as refused:
        app_conn.execute(statement)
    assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE, refused.value
    # Nothing changed.
    assert admin_executor.execute("SELECT invoice_id FROM nfse.invoices") == [
        {"invoice_id": "01JROLE000000000000000002"}
    ]
    assert admin_executor.execute("SELECT version, checksum FROM nfse.schema_migrations") == (
        versions
    )


def test_the_components_executor_reports_a_refusal(
    migrated: Migrated, app_secret: AppSecret, admin_executor: SqlAlchemyExecutor
) -> None:
    executor = SqlAlchemyExecutor.from_url(app_url(migrated.conninfo, app_secret.password))
    try:
        with pytest.raises(SqlError, match="permission denied"):
            executor.execute("DELETE FROM nfse.invoices")
    finally:
        executor.engine.dispose()


def test_the_app_role_has_login_and_the_grants_only(migrated: Migrated) -> None:
    with psycopg.connect(migrated.conninfo) as conn:
        attributes = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
            " rolbypassrls FROM pg_roles WHERE rolname = %s",
            (APP_ROLE,),
        ).fetchone()
        memberships = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
            " WHERE r.rolname = %s",
            (APP_ROLE,),
        ).fetchone()
        table_privileges = conn.execute(
            "SELECT c.relname, a.privilege_type FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace,"
            " aclexplode(c.relacl) a WHERE n.nspname = 'nfse'"
            " AND a.grantee = %s::regrole ORDER BY 1, 2",
            (APP_ROLE,),
        ).fetchall()
        schema_privileges = conn.execute(
            "SELECT n.nspname, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a"
            " WHERE a.grantee = %s::regrole ORDER BY 1, 2",
            (APP_ROLE,),
        ).fetchall()
    assert attributes == (True, False, False, False, False, False)
    assert memberships == (0,)
    assert table_privileges == [
        ("invoices", "INSERT"),
        ("invoices", "SELECT"),
        ("invoices", "UPDATE"),
    ]
    assert schema_privileges == [("nfse", "USAGE")]


# --------------------------------------------------------- the password and the secret


def test_the_password_set_is_the_secrets(migrated: Migrated, app_secret: AppSecret) -> None:
    code, out, err = run_command(
        ["--database-url", migrated.admin_url, "--app-secret-arn", "app"],
        {"app": app_secret.text},
    )
    verifier = stored_verifier()
    assert code == 0, err
    assert verifier is not None and verifier.startswith("SCRAM-SHA-256$4096:")
    assert scram_verifies(verifier, app_secret.password)
    assert not scram_verifies(verifier, app_secret.password + "x")
    # The command says what it did and never shows the password, nor what the server stores.
    for output in (out + err, migrated.output):
        assert f"role {APP_ROLE}: password set from arn:aws:secretsmanager:" in output
        assert app_secret.password not in output
        assert verifier.split("$", 2)[2] not in output  # nor the keys the server keeps


def test_the_checker_agrees_with_libpq(app_role_left_as_found: None, app_secret: AppSecret) -> None:
    """scram_verifies is the tests' own; libpq's PQencryptPasswordConn is the reference."""
    with admin() as conn:
        reference = conn.pgconn.encrypt_password(
            app_secret.password.encode(), APP_ROLE.encode(), b"scram-sha-256"
        ).decode()
    assert scram_verifies(reference, app_secret.password)
    assert not scram_verifies(reference, "another-password-entirely")
    ours = scram_sha_256_verifier(app_secret.password)
    assert scram_verifies(ours, app_secret.password)
    assert ours != scram_sha_256_verifier(app_secret.password)  # a new salt each time


def test_migrate_again_changes_nothing(migrated: Migrated, app_secret: AppSecret) -> None:
    def state() -> tuple[Any, ...]:
        with psycopg.connect(migrated.conninfo) as conn:
            versions = conn.execute(
                "SELECT version, checksum FROM nfse.schema_migrations ORDER BY 1"
            ).fetchall()
            grants = conn.execute(
                "SELECT c.relname, c.relacl::text, n.nspacl::text FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'nfse' ORDER BY 1"
            ).fetchall()
            role = conn.execute(
                "SELECT rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s",
                (APP_ROLE,),
            ).fetchone()
        return versions, grants, role

    before = state()
    code, out, err = run_command(
        ["--database-url", migrated.admin_url, "--app-secret-arn", "app"],
        {"app": app_secret.text},
    )
    assert code == 0, err
    assert out.splitlines()[0] == "up to date"
    assert state() == before
    assert [v for v, _ in before[0]] == [m.version for m in load_migrations()]
    assert scram_verifies(stored_verifier(), app_secret.password)  # the same password


@pytest.mark.usefixtures("app_password_current")
def test_a_rotated_secret_is_applied_by_the_next_run(
    migrated: Migrated, app_secret: AppSecret
) -> None:
    rotated = AppSecret(secrets.token_urlsafe(30))
    code, _, err = run_command(
        ["--database-url", migrated.admin_url, "--app-secret-arn", "app"], {"app": rotated.text}
    )
    assert code == 0, err
    verifier = stored_verifier()
    assert scram_verifies(verifier, rotated.password)
    assert not scram_verifies(verifier, app_secret.password)


@pytest.mark.parametrize(
    ("secret_text", "message"),
    [
        (json.dumps({"username": "postgres", "password": "p" * 24}), "username must be"),
        (json.dumps({"username": "nfse_admin", "password": "p" * 24}), "username must be"),
        (json.dumps({"username": APP_ROLE, "password": "short-secret"}), "16 to 1024"),
        (json.dumps({"username": APP_ROLE, "password": "senha-com-ção-123456"}), "printable"),
        (json.dumps({"username": APP_ROLE}), "password must be"),
        ("not json: hunter2hunter2hunter2", "JSON object"),
    ],
)
def test_a_wrong_secret_changes_nothing(
    app_role_left_as_found: None, secret_text: str, message: str
) -> None:
    """Read and checked before anything runs: the master secret, say, must not lead the
    command to change the admin's password, nor apply half of what was asked."""
    admin_before = stored_verifier("postgres")
    with scratch_database(prefix="roles_bad") as conninfo:
        url = sqlalchemy_url(conninfo)
        code, out, err = run_command(
            ["--database-url", url, "--app-secret-arn", "app"], {"app": secret_text}
        )
        with psycopg.connect(conninfo) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'nfse'"
            ).fetchone()
    assert code == 2
    assert message in err
    assert out == ""
    assert tables == (0,)  # no migration ran
    assert stored_verifier("postgres") == admin_before
    for part in ("p" * 24, "short-secret", "hunter2", "senha"):
        assert part not in err


def test_a_missing_secret_is_reported_without_migrating(app_role_left_as_found: None) -> None:
    with scratch_database(prefix="roles_bad") as conninfo:
        code, out, err = run_command(
            ["--database-url", sqlalchemy_url(conninfo), "--app-secret-arn", APP_SECRET], {}
        )
    assert code == 2
    assert "cannot read the app secret" in err and "ResourceNotFoundException" in err
    assert out == ""


def test_an_app_secret_needs_postgresql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    code, out, err = run_command(["--database-url", url, "--app-secret-arn", "app"], {})
    assert code == 2 and "needs PostgreSQL" in err and out == ""
    executor = SqlAlchemyExecutor.from_url(url)
    try:
        with pytest.raises(MigrationError, match="no roles"):
            set_app_role_password(executor, AppCredentials(APP_ROLE, "p" * 20))
    finally:
        executor.engine.dispose()


def test_the_password_step_refuses_another_role_or_a_weak_password(migrated: Migrated) -> None:
    before = stored_verifier()
    executor = SqlAlchemyExecutor.from_url(migrated.admin_url)
    try:
        with pytest.raises(MigrationError, match="application role is"):
            set_app_role_password(executor, AppCredentials("postgres", "p" * 20))
        with pytest.raises(MigrationError, match="16 to 1024") as info:
            set_app_role_password(executor, AppCredentials(APP_ROLE, "tiny-secret"))
        assert "tiny-secret" not in str(info.value)
    finally:
        executor.engine.dispose()
    assert stored_verifier() == before


class _FailingExecutor:
    """A database that refuses the statement, with the statement in the error's cause (as
    SQLAlchemy's errors carry it)."""

    dialect = "postgresql"

    def execute(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        raise SqlError("permission denied to alter role") from RuntimeError(sql)


def test_a_failed_password_step_shows_neither_statement_nor_verifier() -> None:
    with pytest.raises(MigrationError, match="permission denied") as info:
        set_app_role_password(_FailingExecutor(), AppCredentials(APP_ROLE, "p" * 20))
    error = info.value
    assert error.__cause__ is None and error.__suppress_context__
    assert "SCRAM" not in str(error) and "ALTER ROLE" not in str(error)


def test_the_app_secret_comes_from_the_environment_too(
    migrated: Migrated, app_secret: AppSecret
) -> None:
    code, out, err = run_command(
        [],
        {"app": app_secret.text},
        environ={"DATABASE_URL": migrated.admin_url, "DB_APP_SECRET_ARN": "app"},
    )
    assert code == 0, err
    assert f"role {APP_ROLE}: password set from arn:aws:secretsmanager:{REGION}:" in out


# ------------------------------------------------------------------------- the Data API


@pytest.mark.usefixtures("app_password_current")
def test_the_data_api_signs_in_with_the_app_secret_as_the_app_role(
    migrated: Migrated, app_secret: AppSecret, admin_executor: SqlAlchemyExecutor
) -> None:
    router = DataApiRouter(migrated.conninfo, secrets={APP_SECRET: app_secret.text})
    app = DataApiExecutor(CLUSTER, APP_SECRET, "nfse", router.client(), sleep=lambda _: None)
    assert app.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]
    ledger = Ledger(app)
    first = row("01JROLE000000000000000003", 3)
    assert ledger.upsert(first) is True
    assert ledger.upsert(issued(first)) is True
    stored = ledger.get(first.invoice_id)
    assert stored is not None and stored.status is InvoiceStatus.ISSUED
    with pytest.raises(SqlError, match=f"SQLState: {INSUFFICIENT_PRIVILEGE}"):
        app.execute("DELETE FROM nfse.invoices")
    # The master secret (any other ARN here) is still the admin.
    admin_api = DataApiExecutor(CLUSTER, ADMIN_SECRET, "nfse", router.client())
    assert admin_api.execute("SELECT current_user AS who") == [{"who": "postgres"}]


def test_the_router_refuses_a_secret_whose_password_is_not_the_roles(
    migrated: Migrated,
) -> None:
    """What makes the test above mean something on a server that trusts 127.0.0.1."""
    wrong = AppSecret(secrets.token_urlsafe(30))
    router = DataApiRouter(migrated.conninfo, secrets={APP_SECRET: wrong.text})
    app = DataApiExecutor(CLUSTER, APP_SECRET, "nfse", router.client(), sleep=lambda _: None)
    with pytest.raises(SqlError, match="password authentication failed"):
        app.execute("SELECT 1 AS one")


def test_migrate_and_the_password_over_the_data_api(
    app_role_left_as_found: None, app_secret: AppSecret
) -> None:
    """The deployed path end to end: the admin's secret migrates and sets the password (a
    literal the Data API passes through), then the app secret signs in."""
    with scratch_database(prefix="roles_api") as conninfo:
        values = {APP_SECRET: app_secret.text}
        router = DataApiRouter(conninfo, secrets=values)
        admin_api = DataApiExecutor(CLUSTER, ADMIN_SECRET, "nfse", router.client())
        assert migrate(admin_api) == [m.version for m in load_migrations()]
        set_app_role_password(admin_api, read_app_credentials(FakeSecrets(values), APP_SECRET))
        assert migrate(admin_api) == []
        set_app_role_password(admin_api, read_app_credentials(FakeSecrets(values), APP_SECRET))
        app = DataApiExecutor(CLUSTER, APP_SECRET, "nfse", router.client())
        assert app.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]
        assert Ledger(app).upsert(row("01JROLE000000000000000004", 4)) is True
    assert scram_verifies(stored_verifier(), app_secret.password)


# ------------------------------------------------------------------------- local stack


@contextlib.contextmanager
def ledger_step(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack's ledger step with what it needs, not the rest (no worker, gateway or other
    functions): moto and the template's resources and roles, since MigrateFn's handler migrates
    in its own process, as the deploy's custom resource does."""
    try:
        yield stack.start_ledger()
    finally:
        stack.stop()


@pytest.mark.usefixtures("app_password_current")
def test_the_local_stack_runs_the_components_as_the_app_role(
    migrated: Migrated, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    stack = LocalStack(
        StackOptions(state_dir=tmp_path, database_url=migrated.admin_url), echo=lines.append
    )
    with ledger_step(stack):
        pass
    assert stack.ledger_admin_url == migrated.admin_url
    url = make_url(stack.ledger_url)
    assert url.username == APP_ROLE and url.password
    assert (url.host, url.port, url.database) == (
        make_url(migrated.admin_url).host,
        make_url(migrated.admin_url).port,
        make_url(migrated.admin_url).database,
    )
    # The password in the URL is the role's (set, not merely trusted by this server).
    assert scram_verifies(stored_verifier(), str(url.password))
    executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
    try:
        assert executor.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]
        with pytest.raises(SqlError, match="permission denied"):
            executor.execute("DELETE FROM nfse.invoices")
    finally:
        executor.engine.dispose()
    printed = "\n".join(lines) + caplog.text
    assert str(url.password) not in printed
    assert APP_ROLE in printed


@pytest.mark.usefixtures("app_password_current")
def test_the_local_stack_stops_at_a_missing_grant(tmp_path: Path) -> None:
    """The components' statements are checked at start: without UPDATE the UPSERT (ON CONFLICT
    DO UPDATE needs it even to insert) would fail on the worker's first invoice instead."""
    with scratch_database(prefix="roles_stack") as conninfo:
        url = sqlalchemy_url(conninfo)
        executor = SqlAlchemyExecutor.from_url(url)
        try:
            migrate(executor)
            executor.execute(f"REVOKE UPDATE ON nfse.invoices FROM {APP_ROLE}")
        finally:
            executor.engine.dispose()
        stack = LocalStack(StackOptions(state_dir=tmp_path, database_url=url), echo=lambda _: None)
        with (
            pytest.raises(SqlError, match="permission denied for table invoices"),
            ledger_step(stack),
        ):
            pass
        executor = SqlAlchemyExecutor.from_url(url)
        try:
            assert executor.execute("SELECT count(*) AS n FROM nfse.invoices") == [{"n": 0}]
        finally:
            executor.engine.dispose()


def test_the_local_stack_keeps_one_principal_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    stack = LocalStack(StackOptions(state_dir=tmp_path), echo=lambda _: None)
    with ledger_step(stack):
        pass
    assert stack.ledger_url == stack.ledger_admin_url == f"sqlite:///{tmp_path / 'ledger.db'}"
    executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
    try:
        versions = executor.execute("SELECT version FROM nfse.schema_migrations ORDER BY 1")
    finally:
        executor.engine.dispose()
    assert [v["version"] for v in versions] == [m.version for m in load_migrations()]


# ---------------------------------------------------------------- SQLite and literals


def test_sqlite_skips_the_access_control_statements_only() -> None:
    (role_file,) = [m for m in load_migrations() if m.version == "0002_app_role"]
    statements = split_statements(role_file.sql)
    assert [s.split()[0] for s in statements] == ["DO", "GRANT", "GRANT", "REVOKE"]
    assert all(adapt_statement(s, "sqlite") is None for s in statements)
    assert all(adapt_statement(s, "postgresql") == s for s in statements)
    for kept in ("CREATE TABLE IF NOT EXISTS nfse.t (a int)", "DROP INDEX nfse.x"):
        assert adapt_statement(kept, "sqlite") == kept
    for skipped in ("CREATE ROLE r", "ALTER USER r PASSWORD NULL", "drop role r", "do 'x'"):
        assert adapt_statement(skipped, "sqlite") is None


def test_the_migrations_still_apply_to_sqlite_twice(tmp_path: Path) -> None:
    executor = SqlAlchemyExecutor.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert migrate(executor, MIGRATIONS_DIR) == [m.version for m in load_migrations()]
        assert migrate(executor, MIGRATIONS_DIR) == []
        assert Ledger(executor).upsert(row("01JROLE000000000000000005", 5)) is True
    finally:
        executor.engine.dispose()


def test_the_password_literal_holds_nothing_a_layer_would_read() -> None:
    verifier = scram_sha_256_verifier("p" * 20, salt=bytes(range(16)))
    literal = sql_string_literal(verifier)
    assert literal.startswith("E'") and literal.endswith("'")
    body = literal[2:-1]
    for char in (":", "'", "%", "$"):
        assert char not in body
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-\\")
    assert sql_string_literal("a'b:c%d\\e") == "E'a\\x27b\\x3ac\\x25d\\x5ce'"
    with pytest.raises(ValueError, match="ASCII"):
        sql_string_literal("ção")


def test_credentials_never_print_their_password() -> None:
    credentials = AppCredentials(APP_ROLE, "a-password-never-shown")
    assert "a-password-never-shown" not in repr(credentials)
    assert "a-password-never-shown" not in str(credentials)
