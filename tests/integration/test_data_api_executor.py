"""DataApiExecutor through a real rds-data client routed to PostgreSQL (data_api_router):
parameter typing, result parsing, parity with SqlAlchemyExecutor, retries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.ledger import Ledger, LedgerRow, RpsAlreadyRecorded
from nfse_core.store.migrate import migrate
from nfse_core.store.sql_executors import (
    DataApiExecutor,
    IntegrityViolation,
    SqlAlchemyExecutor,
    SqlError,
    SqlUnavailable,
    StatementRetry,
)
from tests.integration.data_api_router import (
    DataApiRouter,
    scratch_database,
    sqlalchemy_url,
)

pytestmark = pytest.mark.integration

CLUSTER = "arn:aws:rds:us-east-1:123456789012:cluster:ledger"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ledger"
T0 = datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=UTC)


@dataclass
class Sleeps:
    seconds: list[float] = field(default_factory=list)

    def __call__(self, delay: float) -> None:
        self.seconds.append(delay)


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    with scratch_database() as info:
        yield info


@pytest.fixture(scope="module")
def sqlalchemy_executor(conninfo: str) -> Iterator[SqlAlchemyExecutor]:
    executor = SqlAlchemyExecutor.from_url(sqlalchemy_url(conninfo))
    migrate(executor)
    yield executor
    executor.engine.dispose()


@pytest.fixture
def router(conninfo: str, sqlalchemy_executor: SqlAlchemyExecutor) -> DataApiRouter:
    sqlalchemy_executor.execute("DELETE FROM nfse.invoices")
    return DataApiRouter(conninfo)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def data_api(router: DataApiRouter, sleeps: Sleeps) -> DataApiExecutor:
    return DataApiExecutor(
        CLUSTER,
        SECRET,
        "ledger",
        router.client(),
        retry=StatementRetry(max_attempts=4),
        sleep=sleeps,
    )


def _row(invoice_id: str = "INV-1") -> LedgerRow:
    return LedgerRow(
        invoice_id=invoice_id,
        tenant="acme",
        cnpj="11222333000181",
        total=Decimal("0.10"),
        status=InvoiceStatus.ISSUED,
        created_at=T0,
        municipio="3550308",
        rps_numero=2**40,
        rps_serie="A1",
        rps_tipo=1,
        nfse_number="2026000001",
        processed_at=T0 + timedelta(seconds=30),
    )


def test_parameters_are_typed_as_the_data_api_needs(
    data_api: DataApiExecutor, router: DataApiRouter
) -> None:
    Ledger(data_api, clock=lambda: T0).upsert(_row())
    params = {p["name"]: p for p in router.calls[-1]["parameters"]}
    assert params["total"] == {
        "name": "total",
        "value": {"stringValue": "0.10"},
        "typeHint": "DECIMAL",
    }
    assert params["created_at"] == {
        "name": "created_at",
        "value": {"stringValue": "2026-03-01 12:00:00.000500"},
        "typeHint": "TIMESTAMP",
    }
    assert params["rps_numero"]["value"] == {"longValue": 2**40}
    assert params["status"]["value"] == {"stringValue": "ISSUED"}
    assert params["error_code"]["value"] == {"isNull": True}
    assert router.calls[-1]["includeResultMetadata"] is True
    assert router.calls[-1]["resourceArn"] == CLUSTER


def test_same_statements_give_the_same_rows_through_both_executors(
    data_api: DataApiExecutor, sqlalchemy_executor: SqlAlchemyExecutor
) -> None:
    # A datetime reaches PostgreSQL as timestamptz through psycopg but as timestamp (UTC wall
    # time, typeHint TIMESTAMP) through the Data API: statements name the type they mean.
    sao_paulo = timezone(timedelta(hours=-3))
    query = (
        "SELECT CAST(:d AS numeric(15, 2)) AS d, CAST(:ts AS timestamptz) AS ts,"
        " :i AS i, :b AS b, :f AS f, :s AS s, CAST(:n AS text) AS n,"
        " CAST('2026-01-31' AS date) AS day,"
        " CAST(7 AS smallint) AS small, CAST('x' AS char(3)) AS padded,"
        " CAST(NULL AS timestamptz) AS never, CAST(:ts AS timestamptz) + interval '1 day' AS later"
    )
    params: dict[str, Any] = {
        "d": Decimal("12345.67"),
        "ts": datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=sao_paulo),
        "i": -(2**62),
        "b": False,
        "f": 0.25,
        "s": "São Paulo; 100% 'quoted' :notaparam",
        "n": None,
    }
    via_api = data_api.execute(query, params)
    via_sqlalchemy = sqlalchemy_executor.execute(query, params)
    assert via_api == via_sqlalchemy
    (row,) = via_api
    assert row["d"] == Decimal("12345.67") and isinstance(row["d"], Decimal)
    assert row["ts"] == datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert row["ts"].utcoffset() == timedelta(0)
    assert row["i"] == -(2**62) and row["b"] is False and row["f"] == 0.25
    assert row["s"] == params["s"] and row["n"] is None and row["never"] is None
    assert row["day"] == date(2026, 1, 31) and row["small"] == 7 and row["padded"] == "x  "
    for key, value in via_sqlalchemy[0].items():
        assert type(via_api[0][key]) is type(value), key


def test_ledger_rows_agree_through_both_executors(
    data_api: DataApiExecutor, sqlalchemy_executor: SqlAlchemyExecutor
) -> None:
    over_api, direct = Ledger(data_api), Ledger(sqlalchemy_executor)
    assert over_api.upsert(_row("INV-1")) is True
    assert direct.upsert(replace(_row("INV-2"), rps_numero=2, total=Decimal("999.99"))) is True
    for invoice_id in ("INV-1", "INV-2"):
        assert over_api.get(invoice_id) == direct.get(invoice_id) is not None
    issued = InvoiceStatus.ISSUED
    assert over_api.list_by_status(issued) == direct.list_by_status(issued)
    assert len(direct.list_by_status(issued)) == 2


def test_rps_reuse_is_an_integrity_violation_over_the_data_api(
    data_api: DataApiExecutor, router: DataApiRouter
) -> None:
    ledger = Ledger(data_api)
    ledger.upsert(_row("INV-1"))
    with pytest.raises(RpsAlreadyRecorded, match="SQLState: 23505"):
        ledger.upsert(_row("INV-2"))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("DatabaseResumingException", "The database is resuming after being auto-paused"),
        ("BadRequestException", "Communications link failure\n\nThe last packet sent ..."),
        ("ServiceUnavailableError", "Service unavailable"),
        ("ThrottlingException", "Rate exceeded"),
        ("InternalServerErrorException", "Internal error"),
        ("DatabaseUnavailableException", "The writer instance is not available"),
    ],
)
def test_transient_errors_are_retried_with_backoff(
    data_api: DataApiExecutor, router: DataApiRouter, sleeps: Sleeps, code: str, message: str
) -> None:
    router.inject(code, message, times=2)
    assert data_api.execute("SELECT 1 AS one") == [{"one": 1}]
    assert len(router.calls) == 3
    assert len(sleeps.seconds) == 2
    assert 0.25 <= sleeps.seconds[0] <= 0.5 and 0.5 <= sleeps.seconds[1] <= 1.0


def test_transient_errors_give_up_after_the_policy(
    data_api: DataApiExecutor, router: DataApiRouter, sleeps: Sleeps
) -> None:
    router.inject("DatabaseResumingException", times=10)
    with pytest.raises(SqlUnavailable, match="after 4 attempts") as raised:
        data_api.execute("SELECT 1 AS one")
    assert isinstance(raised.value.__cause__, ClientError)
    assert len(router.calls) == 4 and len(sleeps.seconds) == 3


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("BadRequestException", 'ERROR: relation "x" does not exist; SQLState: 42P01'),
        ("StatementTimeoutException", "statement timed out"),  # may still run: not resent
        ("ForbiddenException", "not authorized"),
    ],
)
def test_non_transient_errors_are_not_retried(
    data_api: DataApiExecutor, router: DataApiRouter, sleeps: Sleeps, code: str, message: str
) -> None:
    router.inject(code, message)
    with pytest.raises(SqlError) as raised:
        data_api.execute("SELECT 1 AS one")
    assert not isinstance(raised.value, IntegrityViolation | SqlUnavailable)
    assert code in str(raised.value)
    assert len(router.calls) == 1 and sleeps.seconds == []


def test_sql_errors_from_postgresql_are_not_retried(
    data_api: DataApiExecutor, router: DataApiRouter, sleeps: Sleeps
) -> None:
    with pytest.raises(SqlError, match="SQLState: 42601"):
        data_api.execute("SELEC 1")
    assert len(router.calls) == 1 and sleeps.seconds == []


def test_router_refuses_an_untyped_string_where_the_data_api_would(
    router: DataApiRouter,
) -> None:
    # Without typeHint the Data API sends text: PostgreSQL will not put it in a numeric column.
    client = router.client()
    with pytest.raises(ClientError, match="SQLState: 42804"):
        client.execute_statement(
            resourceArn=CLUSTER,
            secretArn=SECRET,
            database="ledger",
            sql="INSERT INTO nfse.invoices (invoice_id, tenant, cnpj, total, status, status_rank,"
            " created_at) VALUES ('X', 't', 'c', :total, 'EMITTED', 0, now())",
            parameters=[{"name": "total", "value": {"stringValue": "1.00"}}],
        )


def test_client_is_built_lazily_once(router: DataApiRouter) -> None:
    built: list[object] = []

    def factory() -> Any:
        built.append(object())
        return router.client()

    executor = DataApiExecutor(CLUSTER, SECRET, "ledger", client_factory=factory)
    assert built == []
    executor.execute("SELECT 1 AS one")
    executor.execute("SELECT 2 AS two")
    assert len(built) == 1
