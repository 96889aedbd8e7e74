"""LocalStack: the whole platform on 127.0.0.1, started in order and stopped newest first."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Self

import boto3
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import WarrantException

from nfse_local.auth import JwtVerifier, cognito_issuer
from nfse_local.cfn import load_template
from nfse_local.fidelity import (
    FUNCTIONS,
    ISSUANCE,
    LEDGER_ADMIN,
    LEDGER_WRITERS,
    SIMULATED_PROVIDERS,
    WORKER,
    dockerfile_env,
)
from nfse_local.gateway import Gateway
from nfse_local.iam import LocalIam
from nfse_local.lifecycle import StartStop
from nfse_local.moto_patches import iam_enforced
from nfse_local.resources import create_resources
from nfse_local.runtime import FunctionProcess
from nfse_local.samples import FAMILY_MUNICIPIOS, SampleTenant
from nfse_local.stack import ledger
from nfse_local.stack.moto import start_moto
from nfse_local.stack.options import (
    DUMMY_CREDENTIALS,
    DeploymentOptions,
    StackError,
    StackOptions,
    WorkerOptions,
    module_available,
)
from nfse_local.stack.schedules import start_schedules
from nfse_local.stack.session import SessionFile
from nfse_local.stack.tenants import TenantSeeder, TenantSession, check_tokens, new_api_key
from nfse_local.stack.workers import WorkerPool

log = logging.getLogger("nfse_local.stack")


# The municipalities the local stack issues in, one per provider family: São Paulo, which the
# registry does not know (so the plain ABRASF 2.04 simulator answers for it, in local mode only);
# one municipality of each ABRASF family the registry ships, answered by the simulator in that
# family's dialect (nfse_local.samples.FAMILY_MUNICIPIOS); and Belo Horizonte, which the registry
# maps to the Sistema Nacional NFS-e (nfse_core/providers/data/providers.json).
LOCAL_PROVIDERS: tuple[dict[str, str], ...] = (
    {
        "municipio": "3550308",
        "family": "abrasf-2.04",
        "standard": "abrasf-2.04",
        "name": "São Paulo (plain ABRASF 2.04 simulator; not in the registry)",
    },
    *(
        {
            "municipio": code,
            "family": family,
            "standard": f"abrasf-{family.rsplit('-', 1)[1]}",
            "name": f"{name} ({family} simulator)",
        }
        for family, (code, name) in FAMILY_MUNICIPIOS.items()
    ),
    {
        "municipio": "3106200",
        "family": "nacional-1.01",
        "standard": "nacional-1.01",
        "name": "Belo Horizonte (NFS-e Nacional simulator)",
    },
)


class LocalStack(StartStop):
    """Context manager for the embedded platform; see the nfse_local.stack docstring.

    `options` says where it lives and what it serves, `worker` how the worker tasks run,
    `deployment` how the template is deployed; `echo` prints its progress lines (stderr by
    default).
    """

    # The template's custom resource whose function migrates the ledger (MigrateFn).
    MIGRATIONS = ledger.MIGRATIONS

    def __init__(
        self,
        options: StackOptions | None = None,
        *,
        worker: WorkerOptions | None = None,
        deployment: DeploymentOptions | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options = options or StackOptions()
        self.deployment = deployment or DeploymentOptions()
        self.root = options.root
        self.state_dir = (options.state_dir or options.root / ".local").resolve()
        self.session_file = options.session_file or self.state_dir / "session.json"
        self.write_session = options.write_session
        self.database_url = options.database_url or os.environ.get("DATABASE_URL") or ""
        # Each sample tenant gets its own API key, as `admin put-tenant` gives each deployed
        # tenant one; `api_key` is the first tenant's, kept for scripts that send one key
        # for everybody: keys meter usage, the JWT says who calls.
        self.api_key = options.api_key or new_api_key()
        self.tenant_api_keys: dict[str, str] = {}
        self.region = options.region
        self.prefix = options.prefix
        self._echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self._exit = ExitStack()
        self._session = SessionFile(self.session_file)
        self.worker_pool = WorkerPool(worker or WorkerOptions(), self.root, self._exit, self._echo)

        self.aws_endpoint = ""
        self.resources: Any = None  # nfse_local.resources.LocalResources
        self.tenants: list[TenantSession] = []
        self.ledger_url = ""
        self.ledger_admin_url = ""
        self.simulator: Any = None  # nfse_local.simulator.ProviderSimulator
        self.nacional_simulator: Any = None  # nfse_local.simulator_nacional.NacionalSimulator
        # The companies' certificates (what the Nacional simulator's mutual TLS trusts).
        self.company_certificates: list[Any] = []
        self.gateway: Gateway | None = None
        self.verifier: JwtVerifier | None = None
        self.lambda_env: dict[str, str] = {}
        # IAM (nfse_local.iam): one user per principal of the template; the harness itself
        # (this process: seeding, checks) acts as the admin once enforcement is on.
        self.iam: Any = None  # nfse_local.iam.LocalIam
        self._credentials: dict[str, str] = dict(DUMMY_CREDENTIALS)
        self._task_credentials: dict[str, dict[str, str]] = {}
        # Every function of the template, each in its own process (nfse_local.runtime).
        self.functions: dict[str, FunctionProcess] = {}
        self._function_log: IO[bytes] | None = None
        self.startup_seconds = 0.0
        self._started = False

    # ------------------------------------------------------------------- lifecycle ---

    def start(self) -> Self:
        if self._started:
            return self
        began = time.monotonic()
        self._run_steps(
            self._prepare_state_dir,
            self._start_moto,
            self._create_resources,
            self._create_tenants,
            self._prepare_ledger,
            self._store_certificates,
            self._start_simulator,
            self._start_functions,
            self._start_worker,
            self._start_gateway,
            self._start_schedules,
            self.worker_pool.check_alive,
        )
        self.startup_seconds = time.monotonic() - began
        if self.write_session:
            self._session.write(self.session_data(), self._exit)
        self._echo(f"local stack ready in {self.startup_seconds:.2f}s: {self.api_url}")
        return self

    def start_ledger(self) -> Self:
        """Start what the ledger step needs and nothing else (no worker, gateway or other
        functions): moto, the template's resources and roles, and the ledger migrated by
        MigrateFn's handler in its own process, as the deploy's custom resource does."""
        if not self._started:
            self._run_steps(
                self._prepare_state_dir,
                self._start_moto,
                self._create_resources,
                self._prepare_ledger,
            )
        return self

    def _run_steps(self, *steps: Callable[[], None]) -> None:
        self._started = True
        try:
            for step in steps:
                step()
        except BaseException:
            self.stop()
            raise

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

    @property
    def nacional_url(self) -> str:
        """The simulated SEFIN Nacional's base URL (…/SefinNacional), or "" without one."""
        simulator = self.nacional_simulator
        return str(simulator.base_url) if simulator is not None else ""

    @property
    def provider_overrides(self) -> str:
        """PROVIDER_ENDPOINT_OVERRIDE here: each standard's simulator."""
        pairs = {"abrasf-2.04": self.simulator_url, "nacional-1.01": self.nacional_url}
        return ",".join(f"{standard}={url}" for standard, url in pairs.items() if url)

    @property
    def providers(self) -> list[dict[str, str]]:
        """The municipalities the local stack issues in, one per provider family (session.json)."""
        if self.simulator is None:
            return []
        return [
            dict(entry)
            for entry in LOCAL_PROVIDERS
            if entry["standard"] != "nacional-1.01" or self.nacional_simulator is not None
        ]

    @property
    def sample_tenants(self) -> tuple[SampleTenant, ...]:
        return self.options.tenants

    @property
    def workers(self) -> int:
        """Worker tasks at once (the service's desired count; each its own process)."""
        return self.worker_pool.options.count

    @property
    def worker_log(self) -> Path | None:
        return self.worker_pool.options.log

    @property
    def worker_grace_seconds(self) -> float:
        return self.worker_pool.options.grace_seconds

    @property
    def worker_env(self) -> dict[str, str]:
        return self.worker_pool.env

    @property
    def worker_processes(self) -> list[subprocess.Popen[bytes]]:
        return self.worker_pool.processes

    @property
    def worker_process(self) -> subprocess.Popen[bytes] | None:
        return self.worker_pool.current

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
            "nacionalSimulatorUrl": self.nacional_url,
            "providers": self.providers,
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

    def _prepare_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._session.refuse_if_running(self.state_dir)
        self._set_environ(DUMMY_CREDENTIALS | {"AWS_DEFAULT_REGION": self.region})

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
        self.aws_endpoint = start_moto(self._exit, self._task_credentials, self._set_environ)

    def _create_resources(self) -> None:
        self.resources = create_resources(
            self.boto3_session(),
            template_path=self.root / "template.yaml",
            endpoint_url=self.aws_endpoint,
            prefix=self.prefix,
            parameter_overrides=dict(self.deployment.parameters) or None,
        )
        self.iam = LocalIam.create(
            self.boto3_session(),
            self.resources,
            template_path=self.root / "template.yaml",
            stack_name=self.prefix,
            parameter_overrides=dict(self.deployment.parameters) or None,
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
        seeder = TenantSeeder(self.resources, self.client, self.issue_token)
        self.company_certificates = seeder.store_certificates(
            c for tenant in self.tenants for c in tenant.cnpjs
        )

    def _local_settings(self, component: str) -> dict[str, str]:
        """Where a component's settings differ from the template's (nfse_local.fidelity lists
        each with its reason): the ledger through SQL, the provider the simulator, no X-Ray."""
        env: dict[str, str] = {}
        if component in LEDGER_WRITERS:
            env["DATABASE_URL"] = self.ledger_url
        if component in LEDGER_ADMIN:
            env["DATABASE_URL"] = self.ledger_admin_url
        if component in SIMULATED_PROVIDERS:
            env["PROVIDER_ENDPOINT_OVERRIDE"] = self.provider_overrides
        if component in ISSUANCE and self.nacional_simulator is not None:
            # The simulated SEFIN's server certificate is its own, not an ICP-Brasil one.
            env["PROVIDER_CA_BUNDLE"] = str(self.nacional_simulator.ca_bundle)
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
        own |= self.deployment.function_env.get(name, {})
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
        start_schedules(self.resources.functions, self.invoke, self._exit)

    def _create_tenants(self) -> None:
        seeder = TenantSeeder(self.resources, self.client, self.issue_token)
        self.tenants, self.tenant_api_keys = seeder.create(self.sample_tenants, self.api_key)
        pool = self.resources.user_pool_id
        self.verifier = JwtVerifier(
            f"{self.aws_endpoint}/{pool}/.well-known/jwks.json",
            cognito_issuer(self.region, pool),
            self.resources.user_pool_client_id,
        )
        check_tokens(self.verifier, self.tenants)

    def _prepare_ledger(self) -> None:
        """Migrate as the admin (`ledger_admin_url`) the way the deploy does, by MigrateFn's
        handler in its own process; the components get `ledger_url` (nfse_local.stack.ledger)."""
        admin_url = ledger.admin_ledger_url(self.database_url, self.state_dir)
        self.ledger_admin_url = admin_url
        template = self._template_resource(self.MIGRATIONS)
        process = self._function_process(ledger.migrating_function(template))
        applied = ledger.run_migrations(template, process, self.region)
        url = ledger.components_ledger_url(admin_url)
        self.ledger_url = url
        redacted = ledger.redacted
        migrated_as = f"; migrated as {redacted(admin_url)}" if url != admin_url else ""
        self._echo(f"ledger: {redacted(url)} ({', '.join(applied) or 'up to date'}{migrated_as})")

    def _template_resource(self, logical_id: str) -> dict[str, Any]:
        resource: dict[str, Any] = load_template(self.root / "template.yaml")["Resources"][
            logical_id
        ]
        return resource

    def _start_simulator(self) -> None:
        if not self._wanted("simulator", self.options.simulator, "nfse_local.simulator"):
            return
        from nfse_local.simulator import ProviderSimulator  # noqa: PLC0415 - optional module

        self.simulator = ProviderSimulator("127.0.0.1", 0)
        self.simulator.start()
        self._exit.callback(self.simulator.stop)
        self._echo(f"provider simulator: {self.simulator.url}")
        from nfse_local.simulator_nacional import NacionalSimulator  # noqa: PLC0415

        # The simulated SEFIN Nacional: HTTPS that demands a company's certificate.
        self.nacional_simulator = NacionalSimulator(
            "127.0.0.1", 0, trusted_clients=self.company_certificates
        )
        self.nacional_simulator.start()
        self._exit.callback(self.nacional_simulator.close)
        self._echo(f"nfs-e nacional simulator: {self.nacional_simulator.base_url}")

    def _start_worker(self) -> None:
        if not self._wanted("worker", self.worker_pool.options.start, "adapters_service.__main__"):
            return
        self.worker_pool.start(self.worker_environment(self.worker_pool.options.env_overrides))

    def worker_environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """A worker task's environment here: the image's ENV, the task definition's, the
        local settings (nfse_local.fidelity), the task role's credentials; then `overrides`
        (a harness's own, e.g. the bench's)."""
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

    def restart_worker(self, kill_signal: int = signal.SIGKILL, which: int = -1) -> int:
        """Send `kill_signal` to a worker (SIGKILL: a crash, nothing settles), wait for it
        to exit, and start a new one with the same environment; returns the new pid."""
        return self.worker_pool.restart(kill_signal, which)

    def stop_worker_gracefully(self) -> int:
        """SIGTERM, as ECS stops a task: the worker finishes its poll and in-flight messages.
        Waits up to `worker_grace_seconds` (then SIGKILL); the exit code."""
        return self.worker_pool.stop_gracefully()

    def _start_gateway(self) -> None:
        gateway = Gateway(
            api_keys=[self.api_key, *self.tenant_api_keys.values()],
            verifier=self.verifier,
            functions=self.functions,
            port=self.options.gateway_port,
        )
        gateway.start()
        self.gateway = gateway
        self._exit.callback(gateway.stop)

    def _wanted(self, what: str, wanted: bool | None, module: str) -> bool:
        present = module_available(module, self.root)
        if wanted and not present:
            raise StackError(f"{what}: {module} does not exist")
        if wanted is None and not present:
            self._echo(f"{what}: not started ({module} does not exist yet)")
            return False
        return bool(wanted) or wanted is None

    def refresh_tokens(self) -> None:
        """New ID tokens for every tenant (they last an hour), and the session file again."""
        self.tenants = [
            replace(tenant, token=self.issue_token(tenant.username, tenant.password))
            for tenant in self.tenants
        ]
        if self.write_session and self._session.written:
            self._session.write(self.session_data(), self._exit)
