"""The whole platform on 127.0.0.1 in one process tree: `python -m nfse_local serve` and tests.

LocalStack starts, in order: a moto server (every resource of template.yaml, Step Functions
executing the real ASL, Cognito issuing real RS256 JWTs), the sample tenants (Cognito users
with custom:tenant_id, their ID tokens, TenantsTable items), throwaway A1 certificates, the
ledger (SQLite under .local/ by default, PostgreSQL when DATABASE_URL is set; migrated by
MigrateFn's handler, as the deploy's LedgerMigrations custom resource does), the provider
simulator (a thread), the adapter worker (its own process, like the Fargate task) and the local
API gateway calling the real handlers. When all is up it writes
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
import re
import secrets
import signal
import subprocess
import sys
import threading
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
from nfse_local.runtime import FunctionProcess, base_process_env
from nfse_local.samples import TENANTS, SampleTenant

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

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

    # The template's custom resource whose function migrates the ledger (MigrateFn).
    MIGRATIONS = "LedgerMigrations"

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
        # Above the worker's 20 s long poll plus a message in flight (ECS's StopTimeout: 110).
        worker_grace_seconds: float = 40.0,
        worker_env_overrides: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        workers: int = 1,
        function_env_overrides: Mapping[str, Mapping[str, str]] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.state_dir = (state_dir or root / ".local").resolve()
        self.session_file = session_file or self.state_dir / "session.json"
        self.write_session = write_session
        self.want_worker = worker
        self.want_simulator = simulator
        self.database_url = database_url or os.environ.get("DATABASE_URL") or ""
        # Each sample tenant gets its own API key, as `admin put-tenant` gives each deployed
        # tenant one; `api_key` is the first tenant's (`api_key` sets it), kept for scripts
        # that send one key for everybody: keys meter usage, the JWT says who calls.
        self.api_key = api_key or f"local-{secrets.token_urlsafe(24)}"
        self.tenant_api_keys: dict[str, str] = {}
        self.sample_tenants = tenants
        self.region = region
        self.prefix = prefix
        self.gateway_port = gateway_port
        self.worker_log = worker_log
        self.worker_grace_seconds = worker_grace_seconds
        self.worker_env_overrides = dict(worker_env_overrides or {})
        # Template parameters for create_resources (e.g. {"MaxReceiveCount": "10"}).
        self.parameter_overrides = dict(parameter_overrides or {})
        # Worker tasks at once (the service's desired count; each its own process).
        self.workers = workers
        # Extra environment per function process (the chaos run's fault injection).
        self.function_env_overrides = {
            k: dict(v) for k, v in (function_env_overrides or {}).items()
        }
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self._echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

        self.aws_endpoint = ""
        self.resources: Any = None  # nfse_local.resources.LocalResources
        self.tenants: list[TenantSession] = []
        self.ledger_url = ""
        self.ledger_admin_url = ""
        self.simulator: Any = None  # nfse_local.simulator.ProviderSimulator
        self.worker_process: subprocess.Popen[bytes] | None = None
        self._worker_output: IO[bytes] | None = None
        self.gateway: Gateway | None = None
        self.verifier: JwtVerifier | None = None
        self.lambda_env: dict[str, str] = {}
        self.worker_env: dict[str, str] = {}
        # IAM (nfse_local.iam): one user per principal of the template; the harness itself
        # (this process: seeding, checks) acts as the admin once enforcement is on.
        self.iam: Any = None  # nfse_local.iam.LocalIam
        self._credentials: dict[str, str] = dict(DUMMY_CREDENTIALS)
        self._task_credentials: dict[str, dict[str, str]] = {}
        # Every function of the template, each in its own process (nfse_local.runtime).
        self.functions: dict[str, FunctionProcess] = {}
        self._function_log: IO[bytes] | None = None
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
            self._store_certificates()
            self._start_simulator()
            self._start_functions()
            self._start_worker()
            self._start_gateway()
            self._start_schedules()
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
        """The harness's session: moto's dummy keys until IAM exists, the admin's after."""
        return boto3.session.Session(
            region_name=self.region,
            aws_access_key_id=self._credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self._credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def invoke(self, function: str, event: Any = None) -> Any:
        """Invoke a function of the template (its logical id, e.g. "ProcessorFn") in its own
        process, as an operator or its schedule would; InvocationFailed when it fails."""
        try:
            process = self.functions[function]
        except KeyError:
            raise StackError(f"template.yaml has no function {function}") from None
        return process.invoke(event if event is not None else {})

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server."""
        return self.boto3_session().client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    def tenant(self, tenant_id: str) -> TenantSession:
        for tenant in self.tenants:
            if tenant.tenant_id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

    def issue_token(self, username: str, password: str) -> str:
        """A new Cognito ID token by the app client's own flow (USER_SRP_AUTH, then the
        PASSWORD_VERIFIER challenge), e.g. when one has expired. moto sends a random SRP_B and
        salt and does not check the proof, so this runs the protocol without verifying it."""
        from pycognito.aws_srp import AWSSRP
        from pycognito.exceptions import WarrantException

        srp = AWSSRP(
            username=username,
            password=password,
            pool_id=self.resources.user_pool_id,
            client_id=self.resources.user_pool_client_id,
            client=self.client("cognito-idp"),
        )
        try:
            answer = srp.authenticate_user()
        except WarrantException as exc:  # a challenge the sample users never get (MFA, ...)
            raise StackError(f"{username}: Cognito answered {type(exc).__name__}") from exc
        return str(answer["AuthenticationResult"]["IdToken"])

    def session_data(self) -> dict[str, Any]:
        """What the session file holds (see README: Running the platform locally)."""
        resources = self.resources
        return {
            "apiUrl": self.api_url,
            # The first tenant's key, for scripts written when one key served everybody.
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
            # Each function's process, at the Lambda RIE path: `nfse_local invoke --session`.
            "functions": {name: p.url for name, p in self.functions.items()},
            "tenants": [
                tenant.as_json() | {"apiKey": self.tenant_api_keys[tenant.tenant_id]}
                for tenant in self.tenants
            ],
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
        from nfse_local.moto_patches import atomic_moto_writes, aws_iam_parity

        # Conditional writes must be atomic, as DynamoDB's are (moto's are not); IAM decides
        # as AWS does (resource ARNs, S3's 403 for a missing key, Task credentials...).
        self._exit.enter_context(atomic_moto_writes())
        self._exit.enter_context(aws_iam_parity(self._task_credentials))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._exit.callback(server.stop)
        host, port = server.get_host_and_port()
        self._set_environ({"MOTO_PORT": str(port)})
        self.aws_endpoint = f"http://{host}:{port}"
        # moto's backends outlive a server in the same process (a bench runs two stacks one
        # after the other): each stack starts from an empty account, as a new one would.
        requests.post(f"{self.aws_endpoint}/moto-api/reset", timeout=10).raise_for_status()
        answer = requests.post(
            f"{self.aws_endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        )
        answer.raise_for_status()

    def _create_resources(self) -> None:
        from nfse_local.iam import LocalIam
        from nfse_local.moto_patches import iam_enforced
        from nfse_local.resources import create_resources

        self.resources = create_resources(
            self.boto3_session(),
            template_path=self.root / "template.yaml",
            endpoint_url=self.aws_endpoint,
            prefix=self.prefix,
            parameter_overrides=self.parameter_overrides or None,
        )
        self.iam = LocalIam.create(
            self.boto3_session(),
            self.resources,
            template_path=self.root / "template.yaml",
            stack_name=self.prefix,
            parameter_overrides=self.parameter_overrides or None,
        )
        self._task_credentials.update(self.iam.task_credentials())
        # From here on every request is checked: the harness is the admin, each component
        # its own principal (enforcement ends with the stack).
        self._credentials = dict(self.iam.admin_credentials)
        self._set_environ(self._credentials)
        self._exit.enter_context(iam_enforced())
        # The API functions' settings (names only, no credentials), for the session file.
        self.lambda_env = (
            {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
            | self.resources.api_env()
            | {"AWS_ENDPOINT_URL": self.aws_endpoint}
        )

    def component_env(self, principal: str, own: Mapping[str, str]) -> dict[str, str]:
        """What a component's process gets: its own settings, its principal's credentials, the
        region and moto's endpoint; nothing of this process's environment."""
        return (
            dict(own)
            | {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
            | dict(self.iam.credentials(principal))
            | {"AWS_ENDPOINT_URL": self.aws_endpoint}
        )

    def _store_certificates(self) -> None:
        """The sample companies' A1 certificates in Secrets Manager, as an operator stores
        them (README): `{CertSecretPrefix}/{cnpj}` = {"pfx": base64, "password": ...}. The
        worker and ProcessorFn read them with their own roles."""
        import base64

        from nfse_local.certs import generate_a1_certificate

        prefix = self.resources.worker_env().get("CERT_SECRET_PREFIX", "nfse/certificates")
        client = self.client("secretsmanager")
        for cnpj in sorted({c for tenant in self.tenants for c in tenant.cnpjs}):
            password = secrets.token_urlsafe(16)
            pfx = generate_a1_certificate(cnpj, password)
            client.create_secret(
                Name=f"{prefix}/{cnpj}",
                KmsKeyId=self.resources.kms_key_id,
                SecretString=json.dumps(
                    {"pfx": base64.b64encode(pfx).decode(), "password": password}
                ),
            )

    def _local_settings(self, component: str) -> dict[str, str]:
        """Where a component's settings differ from the template's (nfse_local.fidelity lists
        each with its reason): the ledger through SQL, the provider the simulator, no X-Ray."""
        from nfse_local.fidelity import FUNCTIONS, ISSUANCE, LEDGER_ADMIN, LEDGER_WRITERS

        env: dict[str, str] = {}
        if component in LEDGER_WRITERS:
            env["DATABASE_URL"] = self.ledger_url
        if component in LEDGER_ADMIN:
            env["DATABASE_URL"] = self.ledger_admin_url
        if component in ISSUANCE:
            env["PROVIDER_ENDPOINT_OVERRIDE"] = self.simulator_url
        if component in FUNCTIONS:
            env["POWERTOOLS_TRACE_DISABLED"] = "true"
        return env

    def _start_functions(self) -> None:
        for name in sorted(self.resources.functions):
            if name not in self.functions:  # MigrateFn started with the ledger
                self._function_process(name)
        # Cold starts now, not on the first request (and each one's URL for the session file).
        for process in self.functions.values():
            process.start()

    def _function_process(self, name: str) -> FunctionProcess:
        """The function's process (not started), with its settings as of now."""
        if self._function_log is None:
            log_path = self.state_dir / "functions.log"
            self._function_log = self._exit.enter_context(log_path.open("ab"))
        spec = self.resources.functions[name]
        own = dict(self.resources.function_env(name)) | self._local_settings(name)
        own |= self.function_env_overrides.get(name, {})
        process = FunctionProcess(
            name,
            spec.handler_ref,
            env=self.component_env(name, own),
            timeout=spec.timeout,
            memory=spec.memory,
            state_dir=self.state_dir,
            log=self._function_log,
        )
        self.functions[name] = process
        self._exit.callback(process.stop)
        return process

    def _start_schedules(self) -> None:
        """Each ScheduleV2 event of the template, on its own rate (EventBridge Scheduler)."""
        stop = threading.Event()
        self._exit.callback(stop.set)
        for name, spec in self.resources.functions.items():
            for expression in spec.schedules:
                period = schedule_period_seconds(expression)
                thread = threading.Thread(
                    target=self._run_schedule,
                    args=(name, period, stop),
                    name=f"schedule-{name}",
                    daemon=True,
                )
                thread.start()

    def _run_schedule(self, name: str, period: float, stop: threading.Event) -> None:
        from nfse_local.runtime import InvocationFailed

        while not stop.wait(period):
            try:
                self.invoke(name, {})
            except InvocationFailed as failure:  # the schedule has no retries either
                log.warning("scheduled %s failed: %s", name, failure)

    def _create_tenants(self) -> None:
        from nfse_core.store.control import TenantDirectory

        cognito = self.client("cognito-idp")
        directory = TenantDirectory(self.client("dynamodb"), self.resources.tenants_table)
        pool = self.resources.user_pool_id
        for position, sample in enumerate(self.sample_tenants):
            directory.put_tenant(sample.tenant_id, sample.cnpjs, sample.name)
            # Its own key (the first tenant's is `api_key`, see __init__).
            key = self.api_key if position == 0 else f"local-{secrets.token_urlsafe(24)}"
            self.tenant_api_keys[sample.tenant_id] = key
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
        """Migrate as the admin (`ledger_admin_url`) the way the deploy does, by MigrateFn's
        handler in its own process (`_run_migrations`); the components get `ledger_url`.

        On PostgreSQL that is the application role of 0002_app_role.sql, as in AWS, so a
        grant the code needs and the migration lacks fails here first. SQLite has no roles:
        there both URLs are the same file.
        """
        from nfse_core.store.migrate import APP_ROLE, AppCredentials, set_app_role_password
        from nfse_core.store.sql_executors import POSTGRESQL, SqlAlchemyExecutor, sqlite_schema_path

        if self.database_url:
            admin_url = self.database_url
        else:
            # A fresh ledger per run, as moto's state is fresh: they must agree.
            database = self.state_dir / "ledger.db"
            for path in (database, Path(sqlite_schema_path(str(database)))):
                path.unlink(missing_ok=True)
            admin_url = f"sqlite:///{database}"
        self.ledger_admin_url = admin_url
        applied = self._run_migrations()
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
        self.ledger_url = url
        migrated_as = f"; migrated as {_redacted(admin_url)}" if url != admin_url else ""
        self._echo(f"ledger: {_redacted(url)} ({', '.join(applied) or 'up to date'}{migrated_as})")

    def _run_migrations(self) -> list[str]:
        """What the deploy does: CloudFormation's Create of LedgerMigrations, sent to MigrateFn's
        process, its answer PUT to a loopback ResponseURL; the versions it applied."""
        from nfse_local.custom_resources import ResponseCatcher, cfn_request

        template = self._template_resource(self.MIGRATIONS)
        service_token = template["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
        properties = {
            key: value
            for key, value in template["Properties"].items()
            if key not in ("ServiceToken", "ServiceTimeout") and isinstance(value, str)
        }
        process = self._function_process(service_token)
        with ResponseCatcher() as catcher:
            event = cfn_request(
                "Create",
                catcher.url(),
                logical_resource_id=self.MIGRATIONS,
                resource_type=str(template["Type"]),
                service_token=f"arn:aws:lambda:{self.region}:123456789012:function:{service_token}",
                properties=properties,
            )
            process.invoke(event)
            answer = catcher.wait(timeout=5).pop().body
        if answer["Status"] != "SUCCESS":
            raise StackError(f"{self.MIGRATIONS} failed: {answer['Reason']}")
        applied = str(answer.get("Data", {}).get("Applied", ""))
        return [version for version in applied.split(",") if version]

    def _template_resource(self, logical_id: str) -> dict[str, Any]:
        from nfse_local.cfn import load_template

        resource: dict[str, Any] = load_template(self.root / "template.yaml")["Resources"][
            logical_id
        ]
        return resource

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
        self.worker_env = self.worker_environment(self.worker_env_overrides)
        self._worker_output = None
        if self.worker_log is not None:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            self._worker_output = self._exit.enter_context(self.worker_log.open("ab"))
        for _ in range(self.workers):
            self._spawn_worker()

    def worker_environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """A worker task's environment here: the image's ENV, the task definition's, the
        local settings (nfse_local.fidelity), the task role's credentials; then `overrides`
        (a harness's own, e.g. the bench's)."""
        from nfse_local.fidelity import WORKER, dockerfile_env

        own = (
            dockerfile_env()
            | dict(self.resources.worker_env())
            | self._local_settings(WORKER)
            # The task's /scratch volume (heartbeat, TMPDIR) is the state dir here.
            | {
                "WORKER_HEARTBEAT_FILE": str(self.state_dir / "worker.heartbeat"),
                "TMPDIR": str(self.state_dir),
            }
            | dict(overrides or {})
        )
        return self.component_env("WorkerTaskRole", own)

    def _spawn_worker(self) -> None:
        output = self._worker_output
        # Its own session: Ctrl-C in the terminal reaches this process only, which then
        # stops the worker in order (SIGTERM, a grace period, SIGKILL).
        process = subprocess.Popen(
            [sys.executable, "-m", "nfse_local.child", "adapters_service"],
            cwd=self.root,
            env={**base_process_env(), **self.worker_env},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
        self.worker_process = process
        self.worker_processes.append(process)
        self._exit.callback(self._stop_worker, process)
        self._echo(f"worker: pid {process.pid}")

    def restart_worker(self, kill_signal: int = signal.SIGKILL, which: int = -1) -> int:
        """Send `kill_signal` to a worker (SIGKILL: a crash, nothing settles), wait for it
        to exit, and start a new one with the same environment; returns the new pid."""
        live = [p for p in self.worker_processes if p.poll() is None]
        if not live:
            raise StackError("the local stack runs no worker")
        process = live[which % len(live)]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(kill_signal)
            try:
                process.wait(timeout=self.worker_grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.worker_processes.remove(process)
        self._spawn_worker()
        assert self.worker_process is not None
        return self.worker_process.pid

    def _start_gateway(self) -> None:
        gateway = Gateway(
            api_keys=[self.api_key, *self.tenant_api_keys.values()],
            verifier=self.verifier,
            functions=self.functions,
            port=self.gateway_port,
        )
        gateway.start()
        self.gateway = gateway
        self._exit.callback(gateway.stop)

    def _check_worker_alive(self) -> None:
        for process in self.worker_processes:
            if process.poll() is not None:
                raise StackError(f"a worker exited at start with code {process.returncode}")

    def _wanted(self, what: str, wanted: bool | None, module: str) -> bool:
        present = module_available(module, self.root)
        if wanted and not present:
            raise StackError(f"{what}: {module} does not exist")
        if wanted is None and not present:
            self._echo(f"{what}: not started ({module} does not exist yet)")
            return False
        return bool(wanted) or wanted is None

    def _stop_worker(self, process: subprocess.Popen[bytes]) -> None:
        """At the stack's end the worker is killed: every queue and table goes with moto, so
        a graceful drain (up to a 20 s long poll, then in-flight work) would keep nothing.
        A drain is what `stop_worker_gracefully` (and the ECS stop) does."""
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)

    def stop_worker_gracefully(self) -> int:
        """SIGTERM, as ECS stops a task: the worker finishes its poll and in-flight messages.
        Waits up to `worker_grace_seconds` (then SIGKILL); the exit code."""
        process = self.worker_process
        if process is None:
            raise StackError("the local stack runs no worker")
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=self.worker_grace_seconds)
        except subprocess.TimeoutExpired:
            self._echo(f"worker: no exit {self.worker_grace_seconds:.0f}s after SIGTERM; SIGKILL")
            process.kill()
            return process.wait(timeout=5)

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


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period_seconds(expression: str) -> float:
    """The period of an EventBridge rate expression ("rate(5 minutes)"); cron is not run."""
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise StackError(f"the local stack runs rate() schedules only, not {expression!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).rstrip("s")]


def _redacted(url: str) -> str:
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
    from datetime import UTC, datetime
    from decimal import Decimal

    from sqlalchemy.engine import make_url

    from nfse_core.domain.status import InvoiceStatus
    from nfse_core.store.ledger import (
        GET_SQL,
        LIST_BY_STATUS_SQL,
        UPSERT_SQL,
        LedgerRow,
        upsert_params,
    )
    from nfse_core.store.sql_executors import SqlAlchemyExecutor

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
