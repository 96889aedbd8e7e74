"""Where the local stack differs from AWS: the one list, each entry with its reason.

The local stack (`make serve`, `make demo`, `make chaos`, the e2e suite) runs the components
with the template's own settings: the same environment variables (Globals and each function's
or container's own), queue attributes, timeouts, long-poll wait and backoff, IAM enforced per
role. What it cannot or does not reproduce is listed here, in two kinds:

- MEASURED entries are settings a component sees differently; `differences(stack)` computes
  them from a running stack (its processes' environments against the template's), and
  tests/e2e/test_fidelity.py checks that they are exactly this list's.
- STRUCTURAL entries are parts of AWS that are emulated, simplified or absent; they are
  described, and the tests named in their reasons cover what can be covered.

`python -m nfse_local.fidelity` prints the Markdown table docs/architecture.md holds (a test
checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nfse_local.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
WORKER = "WorkerTaskDefinition"
ALL = "*"
# What the runtime gives every process in AWS too (the role's credentials, the region, the
# function's name): not settings of ours.
RUNTIME_PROVIDED = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
    }
)


@dataclass(frozen=True, slots=True)
class Deviation:
    kind: Literal["measured", "structural"]
    components: tuple[str, ...]  # logical ids, or ("*",) for every component
    setting: str
    production: str
    local: str
    reason: str


ISSUANCE = (WORKER, "ProcessorFn")
# The components the simulators' URLs are given to: the issuance sends there, and EmitFn then
# refuses no municipality (a simulator answers for each).
SIMULATED_PROVIDERS = ("EmitFn", *ISSUANCE)
LEDGER_WRITERS = (WORKER, "ProcessorFn", "SweeperFn")
LEDGER_ADMIN = ("MigrateFn",)
FUNCTIONS = ("EmitFn", "GetFn", "MigrateFn", "ProcessorFn", "SweeperFn")

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "measured",
        (ALL,),
        "AWS_ENDPOINT_URL",
        "AWS's regional endpoints",
        "moto's server on 127.0.0.1",
        "No AWS account here. moto runs the real ASL, Cognito's JWTs, SQS with redrive, and"
        " IAM per role with the patches of nfse_local/moto_patches.py.",
    ),
    Deviation(
        "measured",
        LEDGER_WRITERS,
        "DB_CLUSTER_ARN, DB_SECRET_ARN / DATABASE_URL",
        "Aurora through the RDS Data API, as nfse_app (LedgerAppSecret)",
        "PostgreSQL as nfse_app through SQLAlchemy (SQLite without DATABASE_URL)",
        "moto's rds-data runs no SQL. The same UPSERT runs on PostgreSQL under the same"
        " application role and grants; the Data API executor is tested against PostgreSQL"
        " through a botocore router (tests/integration/test_data_api_executor.py).",
    ),
    Deviation(
        "measured",
        LEDGER_ADMIN,
        "DB_CLUSTER_ARN, DB_SECRET_ARN, DB_APP_SECRET_ARN / DATABASE_URL",
        "Aurora through the RDS Data API as the master user; nfse_app's password from"
        " LedgerAppSecret",
        "DATABASE_URL's user through SQLAlchemy (SQLite without DATABASE_URL); the stack sets"
        " nfse_app's password itself, a new random one per run",
        "moto's rds-data runs no SQL, and the stack makes no LedgerAppSecret. The handler's"
        " Data API path, its retries while the cluster resumes and the password from the app"
        " secret run against PostgreSQL through the botocore router"
        " (tests/integration/test_migrate_custom_resource.py).",
    ),
    Deviation(
        "measured",
        SIMULATED_PROVIDERS,
        "PROVIDER_ENDPOINT_OVERRIDE",
        "each municipality's provider from the registry",
        "the provider simulators (homologacao only; the registry refuses them in producao)",
        "No municipality answers here. The simulator checks XSD and signatures with code of"
        " its own and misbehaves as providers do. Its registry entry has its own timeouts"
        " (connect 2 s, read 10 s) and settle time (10 s) instead of the ABRASF profile's"
        " 5 s / 30 s / 60 s: it answers on loopback, and a timeout fault then holds a worker"
        " thread 12 s, not 35 s. Deadline, lease and settle time keep the same relations."
        " The deployed registry (PROVIDERS_OBJECT_KEY) is read as in AWS: it says which"
        " standard each municipality uses, and the override names one simulator per standard"
        " (ABRASF 2.04 and NFS-e Nacional). EmitFn gets it too: in AWS it refuses (422"
        " PROVIDER_NOT_CONFIGURED) a municipality without a registry entry; here a simulator"
        " answers for every one, as the samples' São Paulo needs.",
    ),
    Deviation(
        "measured",
        ISSUANCE,
        "PROVIDER_CA_BUNDLE",
        "unset: the providers' servers chain to the system roots (or a bundle the image ships)",
        "the simulated SEFIN Nacional's own server certificate",
        "The Nacional simulator serves HTTPS with mutual TLS, as the SEFIN does, on a"
        " certificate made when the stack starts; no public root can vouch for 127.0.0.1.",
    ),
    Deviation(
        "measured",
        (WORKER,),
        "WORKER_HEARTBEAT_FILE, TMPDIR",
        "/scratch/worker.heartbeat, /scratch (the image's VOLUME, the task's bind mount)",
        "the stack's state directory",
        "The worker runs as a local process; its health check reads the same file.",
    ),
    Deviation(
        "measured",
        FUNCTIONS,
        "POWERTOOLS_TRACE_DISABLED",
        "X-Ray tracing (Tracing: Active)",
        "off",
        "X-Ray is not emulated.",
    ),
    Deviation(
        "structural",
        ("UserPool",),
        "SRP sign-in",
        "Cognito verifies the SRP proof",
        "moto returns a random SRP_B and accepts any proof",
        "moto does not implement SRP verification; the client side runs the real protocol"
        " (pycognito), and the app client's flows are checked from the template.",
    ),
    Deviation(
        "structural",
        ("Api",),
        "API Gateway",
        "REST API with usage plans (throttle, quota) behind CloudFront and WAF",
        "nfse_local/gateway/: routes, API keys, Cognito JWT, payload limit",
        "moto's API Gateway is configuration only. Usage-plan throttling, the WAF rules and"
        " CloudFront are not run; the CloudFront function is run in Node by"
        " tests/unit/test_edge_function.py and the rules are checked from the template.",
    ),
    Deviation(
        "structural",
        (ALL,),
        "KMS",
        "SSE-KMS on tables, bucket, queues and secrets needs kms:Decrypt/GenerateDataKey",
        "not checked",
        "moto does not call KMS for encrypted resources; tests/unit/test_iam_map.py checks the"
        " KMS grants of every component from the template.",
    ),
    Deviation(
        "structural",
        (ALL,),
        "IAM principals",
        "each component assumes its role; resource policies apply",
        "one IAM user per role with the role's policies; bucket, queue and key policies"
        " are not evaluated",
        "moto evaluates identity policies of users; conditions it cannot evaluate never"
        " allow (stricter than AWS, never kinder).",
    ),
    Deviation(
        "structural",
        FUNCTIONS,
        "Lambda",
        "execution environments scaled by concurrency",
        "one process per function, one event at a time, its Timeout enforced",
        "Enough for correctness; the concurrency of a deployment is not modelled.",
    ),
    Deviation(
        "structural",
        (WORKER,),
        "Fargate",
        "tasks scaled on the backlog, read-only root file system",
        "worker processes (one, or as many as asked), killed at the stack's end",
        "No container runtime here; the image's entrypoint is what runs.",
    ),
    Deviation(
        "structural",
        ("ProcessorFn", "SweeperFn"),
        "EventBridge Scheduler",
        "rate() and cron() expressions",
        "rate() expressions only, while the stack runs; tests, the demo and chaos also"
        " invoke the functions directly",
        "The template uses rate() only.",
    ),
    Deviation(
        "structural",
        ("LedgerMigrations",),
        "CloudFormation custom resource",
        "Create, then an Update on every deploy that changes it, before the ledger's writers"
        " (DependsOn); MigrateFn's answer PUT to a presigned S3 URL",
        "one Create when the stack starts, before any other function runs; the answer PUT to"
        " a loopback URL",
        "No CloudFormation here: the stack sends the request it would. Update, Delete and an"
        " answer in every case (failure, exception, near the timeout) are tested in"
        " tests/integration/test_migrate_custom_resource.py.",
    ),
    Deviation(
        "structural",
        (WORKER, "ProcessorFn"),
        "Ledger without PostgreSQL",
        "Aurora PostgreSQL",
        "SQLite, one principal, when DATABASE_URL is not set (make demo on a bare machine)",
        "SQLite has no roles; the suite and `make chaos` use PostgreSQL.",
    ),
)


def expand(deviations: tuple[Deviation, ...], components: tuple[str, ...]) -> set[tuple[str, str]]:
    """(component, variable) pairs the measured entries stand for."""
    pairs: set[tuple[str, str]] = set()
    for deviation in deviations:
        if deviation.kind != "measured":
            continue
        targets = components if deviation.components == (ALL,) else deviation.components
        for component in targets:
            for name in deviation.setting.replace("/", ",").split(","):
                pairs.add((component, name.strip()))
    return pairs


def dockerfile_env(path: Path = ROOT / "adapters_service" / "Dockerfile") -> dict[str, str]:
    """ENV of the worker image's final stage: part of the task's production environment."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            env = {}  # a new stage: only the last one's ENV reaches the container
        elif line.startswith("ENV "):
            for pair in line[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def production_environment(stack: LocalStack, component: str) -> dict[str, str]:
    """What the component's process gets in AWS, resolved to this stack's resources."""
    resources = stack.resources
    env = dict(resources.environments[component])
    for name in resources.not_emulated.get(component, ()):
        env[name] = "<not emulated locally>"
    if component == WORKER:
        env = dockerfile_env() | env
    return env


def local_environments(stack: LocalStack) -> dict[str, Mapping[str, str]]:
    """Each component's process environment, as the stack started it."""
    envs: dict[str, Mapping[str, str]] = {name: p.env for name, p in stack.functions.items()}
    if stack.worker_env:
        envs[WORKER] = stack.worker_env
    return envs


def differences(stack: LocalStack) -> set[tuple[str, str]]:
    """(component, variable) where the running stack differs from the template."""
    found: set[tuple[str, str]] = set()
    for component, local in local_environments(stack).items():
        production = production_environment(stack, component)
        names = (set(production) | set(local)) - RUNTIME_PROVIDED
        for name in names:
            if production.get(name) != local.get(name):
                found.add((component, name))
    return found


def markdown_table() -> str:
    lines = [
        "| kind | components | setting | in AWS | locally | why |",
        "|---|---|---|---|---|---|",
    ]
    for d in DEVIATIONS:
        components = "every component" if d.components == (ALL,) else ", ".join(d.components)
        lines.append(
            f"| {d.kind} | {components} | {d.setting} | {d.production} | {d.local} | {d.reason} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the docs table
    print(markdown_table())
