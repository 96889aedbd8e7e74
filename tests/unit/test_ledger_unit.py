"""Ledger pieces without a database server: rows, parameters, Data API typing and parsing,
retry classification, the migration script splitter and its SQLite adaptation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nfse_core.config import LedgerSettings, SettingsError
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store import migrate as migrate_module
from nfse_core.store.ledger import (
    UPSERT_SQL,
    Ledger,
    LedgerRow,
    RpsAlreadyRecorded,
    row_from_record,
    upsert_params,
)
from nfse_core.store.migrate import (
    MigrationError,
    adapt_statement,
    load_migrations,
    split_statements,
)
from nfse_core.store.sql_executors import (
    DataApiExecutor,
    IntegrityViolation,
    SqlAlchemyExecutor,
    StatementRetry,
    executor_from_settings,
    format_data_api_timestamp,
    from_data_api_field,
    is_transient_data_api_error,
    sqlite_schema_path,
    to_data_api_parameter,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _row(**changes: Any) -> LedgerRow:
    fields: dict[str, Any] = {
        "invoice_id": "INV-1",
        "tenant": "acme",
        "cnpj": "11222333000181",
        "total": Decimal("10.50"),
        "status": InvoiceStatus.EMITTED,
        "created_at": T0,
    }
    fields.update(changes)
    return LedgerRow(**fields)


# ------------------------------------------------------------------------------ LedgerRow


def test_row_coerces_status_text_and_ranks_it() -> None:
    row = _row(status="ISSUED")
    assert row.status is InvoiceStatus.ISSUED and row.status_rank == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total": 10.5}, "Decimal"),
        ({"total": Decimal("NaN")}, "Decimal"),
        ({"total": Decimal("1.005")}, "2 decimals"),
        ({"total": Decimal("10000000000000.00")}, "13 digits"),
        ({"created_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"processed_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"municipio": "355030"}, "7 digits"),
        ({"status": "DONE"}, "DONE"),
    ],
)
def test_row_refuses_what_the_table_cannot_hold(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _row(**changes)


def test_upsert_params_name_every_placeholder() -> None:
    params = upsert_params(_row(status=InvoiceStatus.ISSUED), T0)
    assert params["status"] == "ISSUED" and params["status_rank"] == 2
    assert params["updated_at"] == T0
    placeholders = {p.split(")")[0].split(",")[0] for p in UPSERT_SQL.split(":")[1:]}
    assert placeholders <= set(params)
    assert len(params) == 21


def test_upsert_sql_moves_only_forward() -> None:
    assert "WHERE cur.status_rank < EXCLUDED.status_rank" in UPSERT_SQL
    assert "ON CONFLICT (invoice_id) DO UPDATE" in UPSERT_SQL
    for fixed in ("tenant =", "cnpj =", "total =", "created_at ="):
        assert fixed not in UPSERT_SQL  # facts fixed at emission are never rewritten


def test_row_from_sqlite_values() -> None:
    record = {
        **upsert_params(_row(), T0),
        "total": 1234567890123.45,  # SQLite NUMERIC affinity gives a float back
        "created_at": "2026-03-01 12:00:00.000000+00:00",
        "processed_at": "2026-03-01 09:00:00-03:00",
        "updated_at": "2026-03-01 12:00:01",
        "rps_numero": 3,
    }
    row = row_from_record(record)
    assert row.total == Decimal("1234567890123.45")
    assert row.created_at == T0 and row.created_at.tzinfo is UTC
    assert row.processed_at == T0 and row.processed_at.tzinfo is UTC
    assert row.updated_at == T0 + timedelta(seconds=1)


# ------------------------------------------------------------------------- Ledger (fakes)


class FakeExecutor:
    def __init__(self, answers: list[list[dict[str, Any]] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Mapping[str, Any] | None]] = []

    @property
    def dialect(self) -> str:
        return "postgresql"

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls.append((sql, params))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_upsert_reports_whether_a_row_came_back() -> None:
    executor = FakeExecutor([[{"invoice_id": "INV-1"}], []])
    ledger = Ledger(executor, clock=lambda: T0)
    assert ledger.upsert(_row()) is True
    assert ledger.upsert(_row()) is False
    assert executor.calls[0][1] is not None and executor.calls[0][1]["updated_at"] == T0


def test_upsert_retries_once_then_reports_the_rps_conflict() -> None:
    race = FakeExecutor([IntegrityViolation("dup"), [{"invoice_id": "INV-1"}]])
    assert Ledger(race).upsert(_row()) is True
    reuse = FakeExecutor([IntegrityViolation("dup"), IntegrityViolation("dup")])
    with pytest.raises(RpsAlreadyRecorded, match="already recorded"):
        Ledger(reuse).upsert(_row(rps_numero=7, rps_serie="1", rps_tipo=1))
    assert len(reuse.calls) == 2


def test_list_by_status_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        Ledger(FakeExecutor([])).list_by_status(InvoiceStatus.ISSUED, limit=0)


# ---------------------------------------------------------------------- Data API typing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {"value": {"isNull": True}}),
        (True, {"value": {"booleanValue": True}}),
        (7, {"value": {"longValue": 7}}),
        (0.5, {"value": {"doubleValue": 0.5}}),
        ("x", {"value": {"stringValue": "x"}}),
        (InvoiceStatus.ISSUED, {"value": {"stringValue": "ISSUED"}}),
        (Decimal("1E+2"), {"value": {"stringValue": "100"}, "typeHint": "DECIMAL"}),
        (Decimal("0.10"), {"value": {"stringValue": "0.10"}, "typeHint": "DECIMAL"}),
        (
            datetime(2026, 3, 1, 9, 0, 0, 5, tzinfo=timezone(timedelta(hours=-3))),
            {"value": {"stringValue": "2026-03-01 12:00:00.000005"}, "typeHint": "TIMESTAMP"},
        ),
        (T0, {"value": {"stringValue": "2026-03-01 12:00:00"}, "typeHint": "TIMESTAMP"}),
        (date(2026, 1, 2), {"value": {"stringValue": "2026-01-02"}, "typeHint": "DATE"}),
        (dt_time(1, 2, 3), {"value": {"stringValue": "01:02:03"}, "typeHint": "TIME"}),
        (
            uuid.UUID(int=1),
            {"value": {"stringValue": str(uuid.UUID(int=1))}, "typeHint": "UUID"},
        ),
        (b"\x00", {"value": {"blobValue": b"\x00"}}),
    ],
)
def test_parameters_typed_for_the_data_api(value: Any, expected: dict[str, Any]) -> None:
    assert to_data_api_parameter("p", value) == {"name": "p", **expected}


def test_naive_datetimes_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_data_api_parameter("when", datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="unsupported"):
        to_data_api_parameter("x", object())


@pytest.mark.parametrize(
    ("field", "type_name", "expected"),
    [
        ({"isNull": True}, "numeric", None),
        ({"stringValue": "10.50"}, "numeric", Decimal("10.50")),
        ({"stringValue": "2026-03-01 12:00:00.5"}, "timestamptz", T0.replace(microsecond=500000)),
        ({"stringValue": "2026-03-01 12:00:00"}, "timestamp", datetime(2026, 3, 1, 12)),
        ({"stringValue": "2026-03-01"}, "date", date(2026, 3, 1)),
        ({"longValue": 5}, "int2", 5),
        ({"stringValue": "5"}, "int8", 5),
        ({"booleanValue": False}, "bool", False),
        ({"doubleValue": 0.25}, "float8", 0.25),
        ({"stringValue": "abc"}, "text", "abc"),
        ({"blobValue": b"ab"}, "bytea", b"ab"),
    ],
)
def test_fields_parsed_by_column_type(field: dict[str, Any], type_name: str, expected: Any) -> None:
    value = from_data_api_field(field, {"name": "c", "typeName": type_name})  # type: ignore[arg-type]
    assert value == expected and type(value) is type(expected)


def test_timestamp_format_is_utc_without_offset() -> None:
    local = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3)))
    assert format_data_api_timestamp(local) == "2026-03-01 12:30:00"


def _client_error(code: str, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "ExecuteStatement")


@pytest.mark.parametrize(
    ("code", "message", "transient"),
    [
        ("DatabaseResumingException", "", True),
        ("BadRequestException", "Communications link failure", True),
        ("BadRequestException", "ERROR: syntax error; SQLState: 42601", False),
        ("StatementTimeoutException", "", False),
        ("ThrottlingException", "", True),
        ("AccessDeniedException", "", False),
    ],
)
def test_transient_classification(code: str, message: str, transient: bool) -> None:
    assert is_transient_data_api_error(_client_error(code, message)) is transient


def test_integrity_errors_recognised_by_sqlstate_class() -> None:
    dup = _client_error("BadRequestException", "ERROR: duplicate; SQLState: 23505")
    other = _client_error("DatabaseErrorException", "ERROR: x; SQLState: 42P01")
    assert isinstance(DataApiExecutor._translate(dup), IntegrityViolation)
    assert not isinstance(DataApiExecutor._translate(other), IntegrityViolation)


def test_retry_delay_grows_and_is_capped() -> None:
    policy = StatementRetry(base_delay=1.0, max_delay=5.0)
    assert policy.delay(1, rng=lambda: 0.0) == 0.5
    assert policy.delay(1, rng=lambda: 1.0) == 1.0
    assert policy.delay(3, rng=lambda: 1.0) == 4.0
    assert policy.delay(10, rng=lambda: 1.0) == 5.0


# ------------------------------------------------------------------- settings, executors


def test_settings_choose_the_executor(tmp_path: Path) -> None:
    api = executor_from_settings(
        LedgerSettings.from_env({"DB_CLUSTER_ARN": "arn:c", "DB_SECRET_ARN": "arn:s"})
    )
    assert isinstance(api, DataApiExecutor) and api.dialect == "postgresql"
    local = executor_from_settings(
        LedgerSettings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"})
    )
    assert isinstance(local, SqlAlchemyExecutor) and local.dialect == "sqlite"
    with pytest.raises(SettingsError, match="go together"):
        executor_from_settings(LedgerSettings.from_env({"DB_CLUSTER_ARN": "arn:c"}))
    with pytest.raises(SettingsError, match="no ledger database"):
        executor_from_settings(LedgerSettings.from_env({}))


def test_sqlite_schema_file_sits_next_to_the_database() -> None:
    assert sqlite_schema_path("/data/ledger.db") == "/data/ledger.nfse.db"
    assert sqlite_schema_path("ledger") == "ledger.nfse.db"
    assert sqlite_schema_path(None) == ":memory:"
    assert sqlite_schema_path(":memory:") == ":memory:"


def test_sqlite_executor_refuses_naive_datetimes_and_stores_utc_text() -> None:
    executor = SqlAlchemyExecutor.from_url("sqlite://")
    (row,) = executor.execute(
        "SELECT :t AS t, :d AS d",
        {"t": datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=-3))), "d": Decimal("1.10")},
    )
    assert row == {"t": "2026-03-01 12:00:00.000000+00:00", "d": "1.10"}
    with pytest.raises(ValueError, match="naive"):
        executor.execute("SELECT :t AS t", {"t": datetime(2026, 1, 1)})


# ------------------------------------------------------------------------------ migrations


def test_split_statements_respects_quotes_and_drops_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (a text DEFAULT 'x;y', "we;ird" int); /* block; */
    INSERT INTO t VALUES ('it''s; fine');
    """
    assert split_statements(script) == [
        "CREATE TABLE t (a text DEFAULT 'x;y', \"we;ird\" int)",
        "INSERT INTO t VALUES ('it''s; fine')",
    ]
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements("SELECT 'open")
    with pytest.raises(MigrationError, match="dollar"):
        split_statements("DO $$ BEGIN END $$")


def test_sqlite_adaptation() -> None:
    assert adapt_statement("CREATE SCHEMA IF NOT EXISTS nfse", "sqlite") is None
    assert (
        adapt_statement("CREATE UNIQUE INDEX IF NOT EXISTS ix ON nfse.t (a, b)", "sqlite")
        == "CREATE UNIQUE INDEX IF NOT EXISTS nfse.ix ON t (a, b)"
    )
    pg = "CREATE INDEX ix ON nfse.t (a)"
    assert adapt_statement(pg, "postgresql") == pg


def test_migration_files_must_be_numbered(tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("SELECT 1;")
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    assert [m.version for m in load_migrations(tmp_path)] == ["0001_a", "0002_b"]
    (tmp_path / "bad name.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN"):
        load_migrations(tmp_path)


def test_shipped_migrations_load() -> None:
    (first, *_) = load_migrations()
    assert first.version == "0001_invoices" and len(first.checksum) == 64


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert migrate_module.main(["--database-url", url], environ={}) == 0
    versions = ", ".join(m.version for m in load_migrations())
    assert capsys.readouterr().out.strip() == f"applied: {versions}"
    env = {"DATABASE_URL": url}
    assert migrate_module.main([], environ=env) == 0
    assert capsys.readouterr().out.strip() == "up to date"
    assert migrate_module.main([], environ={}) == 2
    assert "no ledger database" in capsys.readouterr().err
