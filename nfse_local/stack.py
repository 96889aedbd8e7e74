"""The whole platform on 127.0.0.1 in one process tree: `python -m nfse_local serve` and tests.

LocalStack starts, in order: a moto server (every resource of template.yaml, Step Functions
executing the real ASL, Cognito issuing real RS256 JWTs), the sample tenants (Cognito users
with custom:tenant_id, their ID tokens, TenantsTable items), throwaway A1 certificates, the
ledger (SQLite under .local/ by default, PostgreSQL when DATABASE_URL is set; migrations
applied), the provider simulator (a thread), the adapter worker (its own process, like the
Fargate task) and the local API gateway calling the real handlers. When all is up it writes
the session file (.local/session.json: URLs, API key, tokens, the handlers' env) and stops
everything it started on exit, Ctrl-C or SIGTERM.

moto keeps its state in process-wide backends and reads MOTO_PORT from os.environ: run one
LocalStack per process, and no in-process `mock_aws` while it runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import boto3
import requests

from nfse_local.auth import JwtVerifier, cognito_issuer
from nfse_local.gateway import Gateway
from nfse_local.samples import TENANTS, SampleTenant

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
LAMBDA_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "nfse-local",
    "POWERTOOLS_METRICS_NAMESPACE": "NfsePlatform",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
}

log = logging.getLogger("nfse_local.stack")


class StackError(RuntimeError):
    """The local stack could not start (a component failed, or is missing)."""


@dataclass(frozen=True, slots=True)
class TenantSession:
    """A sample tenant as the local stack made it: its Cognito user and a fresh ID token."""

    tenant_id: str
    name: str
    cnpjs: tuple[str, ...]
    username: str
    password: str
    token: str

    def as_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "name": self.name,
            "cnpjs": list(self.cnpjs),
            "username": self.username,
            "password": self.password,
            "token": self.token,
        }


def module_available(name: str, root: Path = ROOT) -> bool:
    """Whether `python -m name` would find the module, run from `root` (the repository)."""
    relative = Path(*name.split("."))
    if (root / relative.with_suffix(".py")).is_file() or (
        root / relative / "__init__.py"
    ).is_file():
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _password() -> str:
    # Satisfies the template's policy and moto's default one (which wants a symbol).
    return f"Local-{secrets.token_urlsafe(12)}-9a"


class LocalStack:
    """Context manager for the embedded platform; see the module docstring.

    Options: `worker`/`simulator` True (required), False (not started) or None (started when
    its module exists). `database_url` defaults to $DATABASE_URL, else SQLite in `state_dir`.
    `session_file` defaults to `<state_dir>/session.json`; `worker_log` None lets the worker
    write to this process's stdout/stderr.
    """

    def __init__(
        self,
        *,
        root: Path = ROOT,
        state_dir: Path | None = None,
        session_file: Path | None = None,
        write_session: bool = True,
        worker: bool | None = None,
        simulator: bool | None = None,
        database_url: str | None = None,
        api_key: str | None = None,
        tenants: tuple[SampleTenant, ...] = TENANTS,
        region: str = REGION,
        prefix: str = "nfse",
        gateway_port: int = 0,
        worker_log: Path | None = None,
        worker_grace_seconds: float = 10.0,
        worker_env_overrides: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.state_dir = (state_dir or root / ".local").resolve()
        self.session_file = session_file or self.state_dir / "session.json"
        self.write_session = write_session
        self.want_worker = worker
        self.want_simulator = simulator
        self.database_url = database_url or os.environ.get("DATABASE_URL") or ""
        self.api_key = api_key or f"local-{secrets.token_urlsafe(24)}"
        self.sample_tenants = tenants
        self.region = region
        self.prefix = prefix
        self.gateway_port = gateway_port
        self.worker_log = worker_log
        self.worker_grace_seconds = worker_grace_seconds
        self.worker_env_overrides = dict(worker_env_overrides or {})
        # Template parameters for create_resources (e.g. {"MaxReceiveCount": "10"}).
        self.parameter_overrides = dict(parameter_overrides or {})
        self._echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

        self.aws_endpoint = ""
        self.resources: Any = None  # nfse_local.resources.LocalResources
        self.tenants: list[TenantSession] = []
        self.ledger_url = ""
        self.cert_dir = self.state_dir / "certs"
        self.simulator: Any = None  # nfse_local.simulator.ProviderSimulator
        self.worker_process: subprocess.Popen[bytes] | None = None
        self._worker_output: IO[bytes] | None = None
        self.gateway: Gateway | None = None
        self.verifier: JwtVerifier | None = None
        self.lambda_env: dict[str, str] = {}
        self.worker_env: dict[str, str] = {}
        self.startup_seconds = 0.0
        self._exit = ExitStack()
        self._started = False
        self._session_text = ""

    # ------------------------------------------------------------------- lifecycle ---

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._started:
            return self
        self._started = True
        began = time.monotonic()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._refuse_if_running()
            self._set_environ(DUMMY_CREDENTIALS | {"AWS_DEFAULT_REGION": self.region})
            self._start_moto()
            self._create_resources()
            self._create_tenants()
            self._prepare_ledger()
            self._start_simulator()
            self._start_worker()
            self._start_gateway()
            self._check_worker_alive()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        if self.write_session:
            self._write_session_file()
        self._echo(f"local stack ready in {self.startup_seconds:.2f}s: {self.api_url}")
        return self

    def stop(self) -> None:
        """Stop everything started, newest first; safe to call more than once."""
        self._started = False
        self._exit.close()

    # -------------------------------------------------------------------- accessors ---

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise StackError("the local stack is not running")
        return self.gateway.url

    @property
    def simulator_url(self) -> str:
        return str(self.simulator.url) if self.simulator is not None else ""

    def boto3_session(self) -> boto3.session.Session:
        return boto3.session.Session(
            region_name=self.region,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server."""
        return self.boto3_session().client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    def tenant(self, tenant_id: str) -> TenantSession:
        for tenant in self.tenants:
            if tenant.tenant_id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

    def issue_token(self, username: str, password: str) -> str:
        """A new Cognito ID token (ADMIN_USER_PASSWORD_AUTH), e.g. when one has expired."""
        answer = self.client("cognito-idp").admin_initiate_auth(
            UserPoolId=self.resources.user_pool_id,
            ClientId=self.resources.user_pool_client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        return str(answer["AuthenticationResult"]["IdToken"])

    def session_data(self) -> dict[str, Any]:
        """What the session file holds (see README: Running the platform locally)."""
        resources = self.resources
        return {
            "apiUrl": self.api_url,
            "apiKey": self.api_key,
            "awsEndpoint": self.aws_endpoint,
            "region": self.region,
            "bucket": resources.docs_bucket,
            "table": resources.invoices_table,
            "tenantsTable": resources.tenants_table,
            "queueUrl": resources.requests_queue_url,
            "dlqUrl": resources.dlq_url,
            "stateMachineArn": resources.state_machine_arn,
            "userPoolId": resources.user_pool_id,
            "clientId": resources.user_pool_client_id,
            "jwksUrl": self.verifier.jwks_url if self.verifier else "",
            "issuer": self.verifier.issuer if self.verifier else "",
            "ledgerUrl": self.ledger_url,
            "simulatorUrl": self.simulator_url,
            "workerPid": self.worker_process.pid if self.worker_process else None,
            "lambdaEnv": dict(self.lambda_env),
            "tenants": [tenant.as_json() for tenant in self.tenants],
            "startupSeconds": round(self.startup_seconds, 3),
        }

    # ------------------------------------------------------------------------ steps ---

    def _refuse_if_running(self) -> None:
        """Two stacks on one state dir would wipe each other's ledger and session file."""
        try:
            api_url = json.loads(self.session_file.read_text())["apiUrl"]
            requests.get(api_url, timeout=0.5)
        except (OSError, ValueError, KeyError, TypeError, requests.RequestException):
            return  # no session file, or a stale one: nobody is serving it
        raise StackError(
            f"a local stack is already running from {self.state_dir} ({api_url}); stop it,"
            " or give this one another state dir"
        )

    def _set_environ(self, values: Mapping[str, str]) -> None:
        """Set process env vars now; the old values come back when the stack stops."""
        saved = {name: os.environ.get(name) for name in values}

        def restore() -> None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        os.environ.update(values)
        self._exit.callback(restore)

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call
        # Port 0: the kernel picks a free port, so there is no window for another process to
        # take it. moto reads MOTO_PORT when a state machine runs (its tasks call back into
        # this server), so setting it right after the bind and before any resource exists is
        # as good as before; the server hangs forever if its bind fails, which this avoids.
        from nfse_local.moto_patches import atomic_moto_writes

        # Conditional writes must be atomic, as DynamoDB's are (moto's are not).
        self._exit.enter_context(atomic_moto_writes())
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._exit.callback(server.stop)
        host, port = server.get_host_and_port()
        self._set_environ({"MOTO_PORT": str(port)})
        self.aws_endpoint = f"http://{host}:{port}"
        answer = requests.post(
            f"{self.aws_endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        )
        answer.raise_for_status()

    def _create_resources(self) -> None:
        from nfse_local.resources import create_resources

        self.resources = create_resources(
            self.boto3_session(),
            template_path=self.root / "template.yaml",
            endpoint_url=self.aws_endpoint,
            prefix=self.prefix,
            parameter_overrides=self.parameter_overrides or None,
        )
        self.lambda_env = (
            DUMMY_CREDENTIALS
            | {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
            | LAMBDA_DEFAULTS
            | self.resources.api_env()
            | {"AWS_ENDPOINT_URL": self.aws_endpoint}
        )

    def _create_tenants(self) -> None:
        from nfse_core.store.control import TenantDirectory

        cognito = self.client("cognito-idp")
        directory = TenantDirectory(self.client("dynamodb"), self.resources.tenants_table)
        pool = self.resources.user_pool_id
        for sample in self.sample_tenants:
            directory.put_tenant(sample.tenant_id, sample.cnpjs, sample.name)
            password = _password()
            cognito.admin_create_user(
                UserPoolId=pool,
                Username=sample.username,
                UserAttributes=[
                    {"Name": "email", "Value": f"{sample.tenant_id}@example.com"},
                    {"Name": "email_verified", "Value": "true"},
                    {"Name": "custom:tenant_id", "Value": sample.tenant_id},
                ],
                MessageAction="SUPPRESS",
            )
            cognito.admin_set_user_password(
                UserPoolId=pool, Username=sample.username, Password=password, Permanent=True
            )
            token = self.issue_token(sample.username, password)
            self.tenants.append(
                TenantSession(
                    sample.tenant_id, sample.name, sample.cnpjs, sample.username, password, token
                )
            )
        self.verifier = JwtVerifier(
            f"{self.aws_endpoint}/{pool}/.well-known/jwks.json",
            cognito_issuer(self.region, pool),
            self.resources.user_pool_client_id,
        )
        # Fails fast (and warms the key cache) if moto's tokens and the verifier disagree.
        for tenant in self.tenants:
            claims = self.verifier.verify(tenant.token)
            if claims.get("custom:tenant_id") != tenant.tenant_id:
                raise StackError(f"the ID token of {tenant.username} lacks custom:tenant_id")

    def _prepare_ledger(self) -> None:
        from nfse_core.store.migrate import migrate
        from nfse_core.store.sql_executors import SqlAlchemyExecutor, sqlite_schema_path

        if self.database_url:
            url = self.database_url
        else:
            # A fresh ledger per run, as moto's state is fresh: they must agree.
            database = self.state_dir / "ledger.db"
            for path in (database, Path(sqlite_schema_path(str(database)))):
                path.unlink(missing_ok=True)
            url = f"sqlite:///{database}"
        executor = SqlAlchemyExecutor.from_url(url)
        try:
            applied = migrate(executor)
        finally:
            executor.engine.dispose()
        self.ledger_url = url
        self._echo(f"ledger: {_redacted(url)} ({', '.join(applied) or 'up to date'})")

    def _start_simulator(self) -> None:
        if not self._wanted("simulator", self.want_simulator, "nfse_local.simulator"):
            return
        from nfse_local.simulator import ProviderSimulator

        self.simulator = ProviderSimulator("127.0.0.1", 0)
        self.simulator.start()
        self._exit.callback(self.simulator.stop)
        self._echo(f"provider simulator: {self.simulator.url}")

    def _start_worker(self) -> None:
        if not self._wanted("worker", self.want_worker, "adapters_service.__main__"):
            return
        from nfse_local.certs import write_a1_certificate

        for cnpj in sorted({c for tenant in self.tenants for c in tenant.cnpjs}):
            if not (self.cert_dir / f"{cnpj}.pfx").exists():
                write_a1_certificate(self.cert_dir, cnpj, secrets.token_urlsafe(16))
        heartbeat = str(self.state_dir / "worker.heartbeat")
        self.worker_env = (
            DUMMY_CREDENTIALS
            | {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
            | self.resources.worker_env()
            | {
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "PROVIDER_ENDPOINT_OVERRIDE": self.simulator_url,
                "CERT_SOURCE": "file",
                "CERT_DIR": str(self.cert_dir),
                "DATABASE_URL": self.ledger_url,
                "HEARTBEAT_FILE": heartbeat,
                "WORKER_HEARTBEAT_FILE": heartbeat,
                # Short long-polls: a stop (SIGTERM) is honoured within a couple of seconds.
                "WORKER_WAIT_SECONDS": "2",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "PYTHONUNBUFFERED": "1",
            }
            | self.worker_env_overrides
        )
        self._worker_output = None
        if self.worker_log is not None:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            self._worker_output = self._exit.enter_context(self.worker_log.open("ab"))
        self._spawn_worker()

    def _spawn_worker(self) -> None:
        output = self._worker_output
        # Its own session: Ctrl-C in the terminal reaches this process only, which then
        # stops the worker in order (SIGTERM, a grace period, SIGKILL).
        process = subprocess.Popen(
            [sys.executable, "-m", "adapters_service"],
            cwd=self.root,
            env={**os.environ, **self.worker_env},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
        self.worker_process = process
        self._exit.callback(self._stop_worker, process)
        self._echo(f"worker: pid {process.pid}")

    def restart_worker(self, kill_signal: int = signal.SIGKILL) -> int:
        """Send `kill_signal` to the worker (SIGKILL: a crash, nothing settles), wait for it
        to exit, and start a new one with the same environment; returns the new pid."""
        process = self.worker_process
        if process is None:
            raise StackError("the local stack runs no worker")
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(kill_signal)
            try:
                process.wait(timeout=self.worker_grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._spawn_worker()
        assert self.worker_process is not None
        return self.worker_process.pid

    def _start_gateway(self) -> None:
        gateway = Gateway(
            api_keys=[self.api_key],
            verifier=self.verifier,
            env=self.lambda_env,
            port=self.gateway_port,
            code_root=self.root,
        )
        gateway.start()
        self.gateway = gateway
        self._exit.callback(gateway.stop)

    def _check_worker_alive(self) -> None:
        process = self.worker_process
        if process is not None and process.poll() is not None:
            raise StackError(f"the worker exited at start with code {process.returncode}")

    def _wanted(self, what: str, wanted: bool | None, module: str) -> bool:
        present = module_available(module, self.root)
        if wanted and not present:
            raise StackError(f"{what}: {module} does not exist")
        if wanted is None and not present:
            self._echo(f"{what}: not started ({module} does not exist yet)")
            return False
        return bool(wanted) or wanted is None

    def _stop_worker(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.worker_grace_seconds)
        except subprocess.TimeoutExpired:
            self._echo(f"worker: no exit {self.worker_grace_seconds:.0f}s after SIGTERM; SIGKILL")
            process.kill()
            process.wait(timeout=5)

    def _write_session_file(self) -> None:
        text = json.dumps(self.session_data(), indent=2)
        self.session_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.session_file.with_suffix(".tmp")
        # It holds an API key, passwords and tokens (local ones, but still): owner only.
        temporary.touch(mode=0o600)
        temporary.chmod(0o600)
        temporary.write_text(text)
        temporary.replace(self.session_file)
        first = not self._session_text
        self._session_text = text
        if first:
            self._exit.callback(self._remove_session_file)

    def _remove_session_file(self) -> None:
        # A stale session file would point `invoke --session` at dead ports; one another
        # stack wrote since is not ours to remove.
        with contextlib.suppress(OSError):
            if self.session_file.read_text() == self._session_text:
                self.session_file.unlink()
        self._session_text = ""

    def refresh_tokens(self) -> None:
        """New ID tokens for every tenant (they last an hour), and the session file again."""
        self.tenants = [
            replace(tenant, token=self.issue_token(tenant.username, tenant.password))
            for tenant in self.tenants
        ]
        if self.write_session and self._session_text:
            self._write_session_file()


def _redacted(url: str) -> str:
    """A database URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
