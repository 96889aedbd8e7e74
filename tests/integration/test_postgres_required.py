"""Without PostgreSQL the ledger tests fail, naming the command that starts it; never skip.

`make test` is CI's gate: a skip would turn a machine without the ledger's database into a green
run. The helper every PostgreSQL fixture goes through (`scratch_database` -> `require_postgres`)
is pointed at a port nobody listens on, in this process and in a child pytest run whose exit
status CI would see.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.data_api_router import PG_START, require_postgres, scratch_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def conninfo_for(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=3"


def test_an_unreachable_server_is_a_failure_that_names_the_fix() -> None:
    port = closed_port()
    with pytest.raises(pytest.fail.Exception) as caught:
        require_postgres(conninfo_for(port))
    assert not isinstance(caught.value, pytest.skip.Exception)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert PG_START in message
    assert PG_START == "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def test_a_scratch_database_on_an_unreachable_server_fails_before_anything_else() -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="pg_ctlcluster"),
        scratch_database(conninfo_for(closed_port())),
    ):
        pytest.fail("a scratch database was handed out without a server")


def test_the_running_server_passes() -> None:
    require_postgres()  # the default conninfo: the server the ledger tests use


def test_a_pytest_run_with_a_ledger_fixture_and_no_server_exits_non_zero(tmp_path: Path) -> None:
    module = tmp_path / "test_needs_the_ledger.py"
    module.write_text(
        textwrap.dedent(
            f"""
            import pytest

            from tests.integration.data_api_router import scratch_database


            @pytest.fixture(scope="module")
            def ledger():
                with scratch_database({conninfo_for(closed_port())!r}) as conninfo:
                    yield conninfo


            def test_uses_the_ledger(ledger):
                assert ledger
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 error" in summary and "skipped" not in summary, summary
    assert PG_START in done.stdout
