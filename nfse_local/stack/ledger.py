"""The stack's ledger: where it lives, its migration by MigrateFn as the deploy runs it, and
the application role the components sign in as."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.ledger import (
    GET_SQL,
    LIST_BY_STATUS_SQL,
    UPSERT_SQL,
    LedgerRow,
    upsert_params,
)
from nfse_core.store.migrate import APP_ROLE, AppCredentials, set_app_role_password
from nfse_core.store.sql_executors import POSTGRESQL, SqlAlchemyExecutor, sqlite_schema_path
from nfse_local.custom_resources import ResponseCatcher, cfn_request
from nfse_local.runtime import FunctionProcess
from nfse_local.stack.options import StackError

# The template's custom resource whose function migrates the ledger (MigrateFn).
MIGRATIONS = "LedgerMigrations"


def admin_ledger_url(database_url: str, state_dir: Path) -> str:
    """The URL migrations run with: `database_url`, else a fresh SQLite file in `state_dir`."""
    if database_url:
        return database_url
    # A fresh ledger per run, as moto's state is fresh: they must agree.
    database = state_dir / "ledger.db"
    for path in (database, Path(sqlite_schema_path(str(database)))):
        path.unlink(missing_ok=True)
    return f"sqlite:///{database}"


def components_ledger_url(admin_url: str) -> str:
    """The URL the components get: on PostgreSQL the application role of 0002_app_role.sql, as
    in AWS, so a grant the code needs and the migration lacks fails here first. SQLite has no
    roles: there it is `admin_url`."""
    executor = SqlAlchemyExecutor.from_url(admin_url)
    try:
        url = admin_url
        if executor.dialect == POSTGRESQL:
            # A new random password per run, set even where the server trusts 127.0.0.1,
            # so the deployed step (ALTER ROLE) runs locally too. LedgerAppSecret is not
            # made here (nfse_local.fidelity), so the stack sets it instead of MigrateFn.
            app = AppCredentials(APP_ROLE, secrets.token_hex(24))
            set_app_role_password(executor, app)
            url = _signed_in_ledger_url(admin_url, app.username, app.password)
    finally:
        executor.engine.dispose()
    return url


def run_migrations(template: dict[str, Any], process: FunctionProcess, region: str) -> list[str]:
    """What the deploy does: CloudFormation's Create of LedgerMigrations (its `template`
    resource), sent to MigrateFn's `process`, its answer PUT to a loopback ResponseURL; the
    versions it applied."""
    service_token = migrating_function(template)
    properties = {
        key: value
        for key, value in template["Properties"].items()
        if key not in ("ServiceToken", "ServiceTimeout") and isinstance(value, str)
    }
    with ResponseCatcher() as catcher:
        event = cfn_request(
            "Create",
            catcher.url(),
            logical_resource_id=MIGRATIONS,
            resource_type=str(template["Type"]),
            service_token=f"arn:aws:lambda:{region}:123456789012:function:{service_token}",
            properties=properties,
        )
        process.invoke(event)
        answer = catcher.wait(timeout=5).pop().body
    if answer["Status"] != "SUCCESS":
        raise StackError(f"{MIGRATIONS} failed: {answer['Reason']}")
    applied = str(answer.get("Data", {}).get("Applied", ""))
    return [version for version in applied.split(",") if version]


def migrating_function(template: dict[str, Any]) -> str:
    """The logical id of the function behind the LedgerMigrations resource `template`."""
    return str(template["Properties"]["ServiceToken"]["Fn::GetAtt"][0])


def redacted(url: str) -> str:
    """A database URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _signed_in_ledger_url(admin_url: str, username: str, password: str) -> str:
    """`admin_url` signed in as `username` instead, once that role is shown to sign in and to be
    allowed the components' statements: EXPLAIN checks their privileges and writes nothing, so a
    grant missing from the migrations fails the start, not the worker's first invoice."""
    url = make_url(admin_url).set(username=username, password=password)
    rendered = url.render_as_string(hide_password=False)
    now = datetime.now(UTC)
    probe = LedgerRow("probe", "probe", "probe", Decimal("0.00"), InvoiceStatus.EMITTED, now)
    executor = SqlAlchemyExecutor.from_url(rendered)
    try:
        who = executor.execute("SELECT current_user AS who")
        if who != [{"who": username}]:
            raise StackError(f"the ledger signs in as {who}, not as {username}")
        executor.execute(f"EXPLAIN {UPSERT_SQL}", upsert_params(probe, now))
        executor.execute(f"EXPLAIN {GET_SQL}", {"invoice_id": "probe"})
        executor.execute(f"EXPLAIN {LIST_BY_STATUS_SQL}", {"status": "EMITTED", "limit": 1})
    finally:
        executor.engine.dispose()
    return rendered
