"""Apply db/migrations/*.sql to the ledger database, in name order, each once.

    python -m nfse_core.store.migrate --database-url sqlite:///.local/ledger.db
    python -m nfse_core.store.migrate --resource-arn ARN --secret-arn ARN --database nfse

Without flags it reads DATABASE_URL or DB_CLUSTER_ARN/DB_SECRET_ARN/DB_NAME.
The same files serve PostgreSQL and SQLite; the few SQLite differences are adapted here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nfse_core.config import LedgerSettings, SettingsError
from nfse_core.store.invoices import utc_now
from nfse_core.store.sql_executors import (
    SQLITE,
    SqlExecutor,
    executor_from_settings,
)

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
    return _CREATE_INDEX.sub(r"\1\4.\2\3\5", statement, count=1)


def _run_script(executor: SqlExecutor, sql: str) -> None:
    for statement in split_statements(sql):
        adapted = adapt_statement(statement, executor.dialect)
        if adapted is not None:
            executor.execute(adapted)


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


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfse_core.store.migrate", description=__doc__)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL)")
    parser.add_argument("--resource-arn", help="Aurora cluster ARN (default: $DB_CLUSTER_ARN)")
    parser.add_argument("--secret-arn", help="Data API secret ARN (default: $DB_SECRET_ARN)")
    parser.add_argument("--database", help="database name (default: $DB_NAME or nfse)")
    parser.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    if args.database_url:
        # An explicit URL wins over a cluster configured in the environment.
        env["DATABASE_URL"] = args.database_url
        env.pop("DB_CLUSTER_ARN", None)
        env.pop("DB_SECRET_ARN", None)
    for flag, name in (
        (args.resource_arn, "DB_CLUSTER_ARN"),
        (args.secret_arn, "DB_SECRET_ARN"),
        (args.database, "DB_NAME"),
    ):
        if flag:
            env[name] = flag
    try:
        executor = executor_from_settings(LedgerSettings.from_env(env))
    except SettingsError as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 2
    applied = migrate(executor, args.migrations_dir)
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
