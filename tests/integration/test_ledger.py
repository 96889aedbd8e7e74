"""The ledger against real databases: SQLite (file), PostgreSQL (psycopg) and PostgreSQL
through the Data API executor (a real rds-data client routed to the same server)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.ledger import UPSERT_SQL, Ledger, LedgerRow, RpsAlreadyRecorded, upsert_params
from nfse_core.store.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate
from nfse_core.store.sql_executors import (
    DataApiExecutor,
    IntegrityViolation,
    SqlAlchemyExecutor,
    SqlExecutor,
)
from tests.integration.data_api_router import (
    DataApiRouter,
    scratch_database,
    sqlalchemy_url,
)

pytestmark = pytest.mark.integration

CLUSTER = "arn:aws:rds:us-east-1:123456789012:cluster:ledger"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ledger"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_conninfo() -> Iterator[str]:
    with scratch_database() as conninfo:
        executor = SqlAlchemyExecutor.from_url(sqlalchemy_url(conninfo))
        migrate(executor)
        executor.engine.dispose()
        yield conninfo


@pytest.fixture(scope="module")
def pg_executor(pg_conninfo: str) -> Iterator[SqlAlchemyExecutor]:
    executor = SqlAlchemyExecutor.from_url(sqlalchemy_url(pg_conninfo))
    yield executor
    executor.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "data_api"])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlExecutor]:
    if request.param == "sqlite":
        sqlite = SqlAlchemyExecutor.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
        migrate(sqlite)
        yield sqlite
        sqlite.engine.dispose()
        return
    pg: SqlAlchemyExecutor = request.getfixturevalue("pg_executor")
    pg.execute("DELETE FROM nfse.invoices")
    if request.param == "postgresql":
        yield pg
    else:
        router = DataApiRouter(request.getfixturevalue("pg_conninfo"))
        yield DataApiExecutor(CLUSTER, SECRET, "ledger", router.client(), sleep=lambda _: None)


def _clock() -> Callable[[], datetime]:
    ticks = iter(T0 + timedelta(seconds=i) for i in range(1, 10_000))
    return lambda: next(ticks)


@pytest.fixture
def ledger(executor: SqlExecutor) -> Ledger:
    return Ledger(executor, clock=_clock())


def emitted(invoice_id: str = "01JINV0000000000000000001", numero: int = 1) -> LedgerRow:
    return LedgerRow(
        invoice_id=invoice_id,
        tenant="acme",
        cnpj="11222333000181",
        total=Decimal("1234.50"),
        status=InvoiceStatus.EMITTED,
        created_at=T0,
        municipio="3550308",
        rps_numero=numero,
        rps_serie="1",
        rps_tipo=1,
        xml_key=f"xml/{invoice_id}.xml",
    )


def issued(row: LedgerRow, **changes: object) -> LedgerRow:
    fields: dict[str, object] = {
        "status": InvoiceStatus.ISSUED,
        "provider_protocol": "PROT-1",
        "nfse_number": "2026000001",
        "verification_code": "ABC123",
        "signed_key": f"signed/{row.invoice_id}.xml",
        "nfse_key": f"nfse/{row.invoice_id}.xml",
        "processed_at": T0 + timedelta(minutes=1),
    }
    fields.update(changes)
    return replace(row, **fields)  # type: ignore[arg-type]


def test_upsert_inserts_and_reads_back_every_field(ledger: Ledger) -> None:
    row = issued(emitted(), total=Decimal("9999999999999.99"), error_message="ção ✓")
    assert ledger.upsert(row) is True
    stored = ledger.get(row.invoice_id)
    assert stored is not None
    assert replace(stored, updated_at=None) == row
    assert stored.total == Decimal("9999999999999.99")
    assert str(stored.total) == "9999999999999.99"
    assert stored.created_at == T0 and stored.created_at.tzinfo is UTC
    assert stored.updated_at == T0 + timedelta(seconds=1)


def test_get_unknown_is_none(ledger: Ledger) -> None:
    assert ledger.get("nope") is None


def test_same_upsert_twice_changes_nothing(ledger: Ledger) -> None:
    row = emitted()
    assert ledger.upsert(row) is True
    first = ledger.get(row.invoice_id)
    assert ledger.upsert(row) is False
    assert ledger.get(row.invoice_id) == first  # updated_at untouched too


def test_issued_after_emitted_moves_forward(ledger: Ledger) -> None:
    row = emitted()
    ledger.upsert(row)
    # Facts fixed at emission survive a later write that disagrees with them.
    later = issued(row, tenant="other", total=Decimal("1.00"), created_at=T0 + timedelta(days=1))
    assert ledger.upsert(later) is True
    stored = ledger.get(row.invoice_id)
    assert stored is not None
    assert stored.status is InvoiceStatus.ISSUED
    assert (stored.tenant, stored.total, stored.created_at) == ("acme", row.total, T0)
    assert stored.nfse_number == "2026000001"
    assert stored.xml_key == row.xml_key


def test_failed_after_issued_does_not_change_the_row(ledger: Ledger) -> None:
    row = issued(emitted())
    ledger.upsert(row)
    before = ledger.get(row.invoice_id)
    failed = replace(row, status=InvoiceStatus.FAILED, error_code="E160", error_message="rejected")
    assert ledger.upsert(failed) is False
    assert ledger.get(row.invoice_id) == before


@pytest.mark.parametrize("status", [InvoiceStatus.EMITTED, InvoiceStatus.PROCESSING])
def test_backward_moves_are_refused(ledger: Ledger, status: InvoiceStatus) -> None:
    row = issued(emitted())
    ledger.upsert(row)
    before = ledger.get(row.invoice_id)
    assert ledger.upsert(replace(row, status=status, nfse_number=None)) is False
    assert ledger.get(row.invoice_id) == before


def test_issued_after_failed_is_refused_first_final_status_wins(ledger: Ledger) -> None:
    row = replace(emitted(), status=InvoiceStatus.FAILED, error_code="E1", error_message="x")
    ledger.upsert(row)
    assert ledger.upsert(issued(row)) is False
    stored = ledger.get(row.invoice_id)
    assert stored is not None and stored.status is InvoiceStatus.FAILED


def test_cancelled_after_issued_moves_forward(ledger: Ledger) -> None:
    row = issued(emitted())
    ledger.upsert(row)
    assert ledger.upsert(replace(row, status=InvoiceStatus.CANCELLED)) is True
    stored = ledger.get(row.invoice_id)
    assert stored is not None and stored.status is InvoiceStatus.CANCELLED
    assert stored.nfse_number == row.nfse_number


def test_forward_move_keeps_known_keys_and_drops_stale_errors(ledger: Ledger) -> None:
    row = replace(
        emitted(),
        status=InvoiceStatus.PROCESSING,
        error_code="TIMEOUT",
        error_message="provider timed out",
    )
    ledger.upsert(row)
    assert ledger.upsert(issued(row, xml_key=None, error_code=None, error_message=None))
    stored = ledger.get(row.invoice_id)
    assert stored is not None
    assert stored.xml_key == row.xml_key  # a NULL in a newer write does not erase it
    assert (stored.error_code, stored.error_message) == (None, None)


def test_same_status_fills_missing_fields_only(ledger: Ledger) -> None:
    row = issued(emitted(), nfse_key=None)
    ledger.upsert(row)
    refresh = replace(row, nfse_key="nfse/late.xml", nfse_number="OTHER")
    assert ledger.upsert(refresh) is True
    stored = ledger.get(row.invoice_id)
    assert stored is not None
    assert stored.nfse_key == "nfse/late.xml"  # filled
    assert stored.nfse_number == row.nfse_number  # never replaced by a same-status write
    assert ledger.upsert(refresh) is False  # nothing left to fill


def test_rps_is_never_reused_by_another_invoice(ledger: Ledger) -> None:
    first = emitted("01JINV-A", numero=7)
    ledger.upsert(first)
    with pytest.raises(RpsAlreadyRecorded, match="already recorded"):
        ledger.upsert(emitted("01JINV-B", numero=7))
    assert ledger.get("01JINV-B") is None
    assert ledger.get("01JINV-A") is not None
    # Another series, type or prestador is another RPS.
    assert ledger.upsert(replace(emitted("01JINV-C", numero=7), rps_serie="2"))
    assert ledger.upsert(replace(emitted("01JINV-D", numero=7), rps_tipo=2))
    assert ledger.upsert(replace(emitted("01JINV-E", numero=7), cnpj="99888777000166"))


def test_list_by_status_oldest_first(ledger: Ledger) -> None:
    for i in (3, 1, 2):
        row = replace(emitted(f"INV-{i}", numero=i), created_at=T0 + timedelta(hours=i))
        ledger.upsert(issued(row) if i != 2 else row)
    assert [r.invoice_id for r in ledger.list_by_status(InvoiceStatus.ISSUED)] == [
        "INV-1",
        "INV-3",
    ]
    assert [r.invoice_id for r in ledger.list_by_status(InvoiceStatus.ISSUED, limit=1)] == ["INV-1"]
    assert [r.invoice_id for r in ledger.list_by_status(InvoiceStatus.EMITTED)] == ["INV-2"]


def test_migrations_are_idempotent(executor: SqlExecutor) -> None:
    assert migrate(executor) == []
    assert migrate(executor) == []
    versions = executor.execute("SELECT version FROM nfse.schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [m.version for m in load_migrations()]


def test_migrations_apply_to_a_fresh_sqlite_twice_and_refuse_an_edited_file(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    executor = SqlAlchemyExecutor.from_url(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert migrate(executor, directory) == [m.version for m in load_migrations()]
    assert migrate(executor, directory) == []
    assert (tmp_path / "fresh.nfse.db").exists()  # the attached `nfse` schema file
    # A half-applied file (no bookkeeping row) is safe to run again.
    executor.execute("DELETE FROM nfse.schema_migrations")
    assert migrate(executor, directory) == [m.version for m in load_migrations()]
    edited = directory / "0001_invoices.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(executor, directory)
    executor.engine.dispose()


def test_status_check_constraints_hold(executor: SqlExecutor) -> None:
    params = upsert_params(emitted(), T0)
    with pytest.raises(IntegrityViolation):
        executor.execute(UPSERT_SQL, {**params, "status": "ISSUED"})  # rank 0 != ISSUED's 2
    with pytest.raises(IntegrityViolation):
        executor.execute(UPSERT_SQL, {**params, "status": "BOGUS"})


# ------------------------------------------------------------------ concurrency (PostgreSQL)


@pytest.fixture(params=["postgresql", "data_api"])
def pg_ledger_factory(
    request: pytest.FixtureRequest, pg_executor: SqlAlchemyExecutor, pg_conninfo: str
) -> Callable[[], Ledger]:
    pg_executor.execute("DELETE FROM nfse.invoices")
    if request.param == "postgresql":
        return lambda: Ledger(pg_executor)
    router = DataApiRouter(pg_conninfo)
    client = router.client()
    return lambda: Ledger(DataApiExecutor(CLUSTER, SECRET, "ledger", client))


def _race(jobs: list[Callable[[], bool]]) -> list[bool]:
    barrier = threading.Barrier(len(jobs))
    results: list[bool | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return [bool(r) for r in results]


def test_concurrent_upserts_end_in_the_highest_status(
    pg_ledger_factory: Callable[[], Ledger],
) -> None:
    ledger = pg_ledger_factory()
    statuses = [InvoiceStatus.EMITTED, InvoiceStatus.PROCESSING, InvoiceStatus.ISSUED] * 4
    for n in range(5):
        row = emitted(f"RACE-{n}", numero=100 + n)
        writes = [
            issued(row) if s is InvoiceStatus.ISSUED else replace(row, status=s) for s in statuses
        ]
        results = _race([partial(ledger.upsert, w) for w in writes])
        stored = ledger.get(row.invoice_id)
        assert stored is not None and stored.status is InvoiceStatus.ISSUED
        assert stored.nfse_number == "2026000001"
        assert 1 <= sum(results) <= 3  # insert, then at most one move per higher rank


def test_concurrent_issued_and_failed_exactly_one_wins(
    pg_ledger_factory: Callable[[], Ledger],
) -> None:
    ledger = pg_ledger_factory()
    for n in range(10):
        row = emitted(f"DUEL-{n}", numero=200 + n)
        ledger.upsert(row)
        failed = replace(row, status=InvoiceStatus.FAILED, error_code="E1", error_message="no")
        writes = [issued(row), failed] * 3
        results = _race([partial(ledger.upsert, w) for w in writes])
        assert sum(results) == 1, results
        winner = writes[results.index(True)]
        stored = ledger.get(row.invoice_id)
        assert stored is not None and stored.status is winner.status
