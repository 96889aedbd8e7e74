"""Monthly AWS cost of the platform at a given invoice volume, per service, from bench/prices.json.

    python -m bench.cost --volume 10000 --volume 1000000 --volume 10000000

Sizes come from template.yaml (function memory, worker CPU/memory, Aurora minimum ACU for the
prod stage, alarms, KMS keys) and statemachine/emission.asl.json (states on the happy path).
DynamoDB request units are counted from the calls the code makes (DDB_CALLS, with the item
sizes of nfse_core's own items); everything that is an assumption sits in `Workload`, with its
reason, and the ones that matter have a command-line option.

Three figures per volume: the fixed monthly baseline (always-on worker task, Aurora minimum,
WAF web ACL and rules, KMS key, secrets, metrics and alarms), the variable cost (what each
invoice adds), and the floor: the per-request charges the design cannot avoid (API Gateway,
CloudFront, WAF, Lambda and Step Functions requests, SQS, DynamoDB and S3 requests, Data API).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from bench.core import Context, Row
from nfse_core.config import IssuanceSettings
from nfse_core.domain.invoice import InvoiceRecord
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus
from nfse_core.store.invoices import to_item

ROOT = Path(__file__).resolve().parent.parent
PRICES = Path(__file__).resolve().parent / "prices.json"
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "emission.asl.json"

GB = 1024**3
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB; CPU share is proportional below
TARGET_PER_MILLION = 25.0
DEFAULT_VOLUMES = (10_000, 1_000_000, 10_000_000)
REFERENCE_VOLUME = 1_000_000  # invoices a month the design changes and the findings are read at
MEMORY_SIZES = (256, 512, 1024, FULL_VCPU_MB)  # EmitFn memory sizes the report compares
RETENTION_YEARS = 5  # fiscal documents are kept five years (CTN art. 173 and 195)
IA_MINIMUM_OBJECT_KB = 128  # S3 Standard-IA and Glacier Instant Retrieval bill at least this

Prices = Mapping[str, Mapping[str, Any]]


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return prices


def tiered(count: float, tiers: Sequence[Sequence[float | None]]) -> float:
    """Cost of `count` requests over [(tier size or None for the rest, USD per million), ...]."""
    left, total = count, 0.0
    for size, per_million in tiers:
        assert per_million is not None
        used = left if size is None else min(left, size)
        total += used * per_million / 1e6
        left -= used
        if left <= 0:
            break
    return total


# ------------------------------------------------------------------------ template ----
class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short forms (!Ref, !If, ...) as {"Fn::X": value}."""


def _cfn_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _prod(value: Any) -> Any:
    """A template value as the prod stage sees it (`!If [IsProd, a, b]` -> a)."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        return _prod(when_true if condition == "IsProd" else when_false)
    return value


@dataclass(frozen=True, slots=True)
class Sizing:
    """What template.yaml and the ASL say about sizes (prod stage)."""

    emit_memory_mb: int
    get_memory_mb: int
    worker_vcpu: float
    worker_memory_gb: float
    worker_min_tasks: int
    worker_concurrency: int
    aurora_min_acu: float
    state_machine_type: str
    happy_path_states: int
    alarms: int
    autoscaling_alarm_metrics: int
    kms_keys: int
    dynamodb_tables: int
    log_groups: int
    # What the template says about logs and traces (None: the AWS defaults apply).
    express_log_level: str = "ALL"
    trace_fixed_rate: float | None = None
    trace_reservoir_per_second: float | None = None
    certificate_cache_seconds: float | None = None

    def applied_to(self, workload: Workload) -> Workload:
        """The workload with what the template and the settings decide instead of assumptions."""
        changes: dict[str, Any] = {"express_log_all": self.express_log_level == "ALL"}
        if self.trace_fixed_rate is not None:
            changes["xray_rate"] = self.trace_fixed_rate
            changes["xray_reservoir_per_second"] = self.trace_reservoir_per_second or 0.0
        if self.certificate_cache_seconds is not None:
            changes["certificate_cache_seconds"] = self.certificate_cache_seconds
        return replace(workload, **changes)

    @classmethod
    def from_files(cls, template: Path = TEMPLATE, asl: Path = ASL) -> Sizing:
        doc = yaml.load(template.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
        resources: dict[str, Any] = doc["Resources"]
        default_memory = int(doc["Globals"]["Function"].get("MemorySize", 128))

        def props(name: str) -> dict[str, Any]:
            found: dict[str, Any] = resources[name]["Properties"]
            return found

        def of_type(kind: str) -> list[dict[str, Any]]:
            return [r for r in resources.values() if r.get("Type") == kind]

        task = props("WorkerTaskDefinition")
        scaling = props("DbCluster")["ServerlessV2ScalingConfiguration"]
        target = props("WorkerScalableTarget")
        policy = props("WorkerScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
        tracked = policy.get("CustomizedMetricSpecification", {}).get("Metrics", [])
        concurrency = doc["Parameters"]["WorkerConcurrency"]["Default"]
        rules = [r["Properties"]["SamplingRule"] for r in of_type("AWS::XRay::SamplingRule")]
        sample_rate = doc["Parameters"].get("TraceSampleRate", {}).get("Default")
        logging = props("EmissionStateMachine").get("Logging", {})
        return cls(
            emit_memory_mb=int(props("EmitFn").get("MemorySize", default_memory)),
            get_memory_mb=int(props("GetFn").get("MemorySize", default_memory)),
            worker_vcpu=int(task["Cpu"]) / 1024,
            worker_memory_gb=int(task["Memory"]) / 1024,
            worker_min_tasks=int(target["MinCapacity"]),
            worker_concurrency=int(concurrency),
            aurora_min_acu=float(_prod(scaling["MinCapacity"])),
            state_machine_type=str(props("EmissionStateMachine").get("Type", "STANDARD")),
            happy_path_states=happy_path_states(json.loads(asl.read_text(encoding="utf-8"))),
            alarms=len(of_type("AWS::CloudWatch::Alarm")),
            # Target tracking creates a high and a low alarm, each on every metric it reads.
            autoscaling_alarm_metrics=2 * max(1, sum(1 for m in tracked if "MetricStat" in m)),
            kms_keys=len(of_type("AWS::KMS::Key")),
            dynamodb_tables=len(of_type("AWS::DynamoDB::Table")),
            log_groups=len(of_type("AWS::Logs::LogGroup")),
            express_log_level=str(logging.get("Level", "OFF")),
            trace_fixed_rate=float(sample_rate) if rules and sample_rate is not None else None,
            trace_reservoir_per_second=float(rules[0]["ReservoirSize"]) if rules else None,
            certificate_cache_seconds=_settings_default("cert_cache_seconds"),
        )


def _settings_default(field_name: str) -> float | None:
    """A default of the worker's settings (nfse_core.config), the value a deploy gets."""
    defaults = {spec.name: spec.default for spec in fields(IssuanceSettings)}
    default = defaults.get(field_name)
    return float(default) if isinstance(default, int | float) else None


def happy_path_states(asl: Mapping[str, Any]) -> int:
    """States an execution runs when nothing fails: from StartAt, following Next to an End."""
    states: Mapping[str, Any] = asl["States"]
    name: str | None = asl["StartAt"]
    count = 0
    while name is not None and count <= len(states):
        count += 1
        state = states[name]
        name = None if state.get("End") or state["Type"] in ("Succeed", "Fail") else state["Next"]
    return count


# ---------------------------------------------------------------------- DynamoDB ----
def ddb_size(value: Mapping[str, Any]) -> int:
    """Bytes of a DynamoDB item in wire form ({"S": ...}), by DynamoDB's sizing rules."""
    return sum(len(name.encode()) + _attr_size(attr) for name, attr in value.items())


def _attr_size(attr: Mapping[str, Any]) -> int:
    ((kind, value),) = attr.items()
    if kind == "S":
        return len(str(value).encode())
    if kind == "N":
        digits = str(value).lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in value)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _attr_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(_attr_size(v) + 1 for v in value)
    raise ValueError(f"unsupported DynamoDB type {kind}")


def item_sizes() -> dict[str, int]:
    """Bytes of each item the code writes, from nfse_core's own item builders."""
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    issued = InvoiceRecord(
        invoice_id="01JD0000000000000000000000",
        tenant="acme",
        status=InvoiceStatus.ISSUED,
        created_at=now,
        total=Decimal("1500.00"),
        cnpj="11222333000181",
        municipio="3550308",
        rps=RpsIdentity(numero=123456, serie="1"),
        xml_key="xml/01JD0000000000000000000000.xml",
        inscricao_municipal="12345678",
        reference="ERP-2026-000123",
        processed_at=now,
        provider_protocol="2026112000012345",
        nfse_number="202600000012345",
        verification_code="ABCD-1234",
        signed_key="signed/01JD0000000000000000000000.xml",
        nfse_key="nfse/01JD0000000000000000000000.xml",
    )
    # Powertools' idempotency record (id, expiration, status, data, validation, in-progress).
    idempotency = {
        "id": {"S": "nfse-platform.emit#" + "0" * 32},
        "expiration": {"N": "1795000000"},
        "in_progress_expiration": {"N": "1795000000000"},
        "status": {"S": "COMPLETED"},
        "data": {
            "S": '{"invoiceId": "01JD0000000000000000000000", "status": "EMITTED", '
            '"xmlKey": "xml/01JD0000000000000000000000.xml"}'
        },
        "validation": {"S": "0" * 32},
    }
    tenant = {
        "tenantId": {"S": "acme"},
        "name": {"S": "ACME Servicos Ltda"},
        "cnpjs": {"SS": ["11222333000181", "12ABC34501DE35"]},
    }
    counter = {"counterId": {"S": "11222333000181#1"}, "lastNumber": {"N": "123456"}}
    return {
        "invoice": ddb_size(to_item(issued)),
        "idempotency": ddb_size(idempotency),
        "tenant": ddb_size(tenant),
        "counter": ddb_size(counter),
        # The sweeper's index keeps keys only: the table's key and its own.
        "pending": ddb_size(
            {
                "invoiceId": {"S": "01JD0000000000000000000000"},
                "pendingShard": {"S": "15"},
                "createdAt": {"S": "2026-11-20T12:00:00.000Z"},
            }
        ),
    }


# (phase, call as in the code, kind, item). Writes cost ceil(size / 1 KB) write units (an
# update: the larger of the item before and after); strongly consistent reads ceil(size / 4 KB)
# read units, eventually consistent ones half that.
DDB_CALLS: tuple[tuple[str, str, str, str], ...] = (
    (
        "emit",
        "EmitService.emit: GetItem of the key's invoice id, consistent",
        "idempotent_read",
        "invoice",
    ),
    ("emit", "RpsCounter.next: UpdateItem ADD lastNumber", "write", "counter"),
    ("emit", "TenantDirectory.cnpjs_of: GetItem, consistent", "read", "tenant"),
    ("emit", "Powertools idempotency: PutItem INPROGRESS", "idempotent_write", "idempotency"),
    ("emit", "InvoiceRepository.put_emitted: PutItem", "write", "invoice"),
    ("emit", "put_emitted: its PendingIndex entry (the sweeper's GSI)", "write", "pending"),
    ("emit", "Powertools idempotency: UpdateItem COMPLETED", "idempotent_write", "idempotency"),
    ("worker", "IssueService.process: InvoiceRepository.get, consistent", "read", "invoice"),
    ("worker", "mark_processing: UpdateItem (conditional)", "write", "invoice"),
    ("worker", "set_signed_key: UpdateItem", "write", "invoice"),
    ("worker", "mark_issued: UpdateItem (conditional)", "issued_write", "invoice"),
    ("worker", "mark_issued: its PendingIndex entry removed", "write", "pending"),
    ("worker", "_settle: InvoiceRepository.get, consistent", "read", "invoice"),
    ("get", "InvoiceQueries.get: InvoiceRepository.get, consistent", "get_read", "invoice"),
)
# EmitFn's AWS calls per invoice: its DynamoDB calls above, the S3 PutObject of xml/ and the
# Step Functions StartExecution.
# (A PendingIndex entry is written by its item's own call: not a call of its own.)
EMIT_AWS_CALLS = (
    sum(1 for phase, *_, item in DDB_CALLS if phase == "emit" and item != "pending") + 2
)


# ------------------------------------------------------------------------ workload ----
@dataclass(frozen=True, slots=True)
class Workload:
    """Per-invoice facts counted from the code, and the assumptions (each with its reason)."""

    api: str = "rest"  # "rest" (the template's: API keys + usage plans) or "http"
    api_requests_per_invoice: int = 2  # one POST and one GET
    cloudfront: bool = True  # CloudFront + WAF in front of the API (the design)
    waf_rules: int = 5  # e.g. 3 managed rule groups + rate limit + geo; $1 each per month
    response_bytes: int = 1024  # body + headers out per request (201/200 JSON, ~0.3-0.6 KB body)
    post_body_bytes: int = 1536  # the JSON invoice, to the origin
    # Lambda: network wait of the AWS calls is fixed; CPU scales with memory below 1,769 MB.
    emit_io_ms: float = 60.0  # 5 DynamoDB calls ~5 ms, S3 PutObject SSE-KMS ~20, StartExecution ~15
    get_io_ms: float = 6.0  # one GetItem
    emit_cpu_ms: float = 5.0  # at one full vCPU: emit path + 7 botocore calls + Powertools (bench)
    get_cpu_ms: float = 2.0  # one botocore call + Powertools
    cold_start_share: float = 0.01  # invocations that start an environment (INIT is billed)
    init_cpu_ms: float = 450.0  # import + settings + XSD at one vCPU (cold start bench)
    idempotency_share: float = 1.0  # POSTs carrying an Idempotency-Key (worst case: all)
    issued_item_extra_bytes: int = 0  # bytes the ISSUED update adds (none: documents are in S3)
    get_consistent: bool = True  # InvoiceRepository.get defaults to ConsistentRead
    # Step Functions
    express_duration_ms: float = 100.0  # billed in 100 ms steps; one sqs:sendMessage task
    express_memory_mb: int = 64  # billed in 64 MB steps; the input is < 1 KB
    # SQS (all requests < 64 KB: one request each)
    sqs_receives_per_invoice: float = 1.0  # the worker may get up to 10 per receive; 1 is the worst
    sqs_visibility_changes_per_invoice: float = 0.05  # retries (provider timeouts, 5xx)
    sqs_long_poll_seconds: int = 20
    # S3 (assumed document sizes; the bench measures 1.4 KB and 3.6 KB for the sample)
    s3_puts_per_invoice: int = 3  # xml/ (EmitFn), signed/ and nfse/ (worker)
    s3_gets_per_invoice: int = 1  # worker: GET xml/ (no HEAD: signedKey on the item says)
    s3_document_bytes: int = (3 + 6 + 4) * 1024
    s3_bucket_key_kms_reduction: float = 0.99  # S3 Bucket Keys: KMS calls drop by ~99%
    # Worker (Fargate)
    worker_invoices_per_second: float = 2.5  # per task; assumed unless bench/worker.py measured it
    worker_target_utilization: float = 0.7  # autoscaling keeps headroom
    # Aurora ledger (Data API)
    ledger_requests_per_invoice: int = 1  # one ExecuteStatement (UPSERT) per settled invoice
    ledger_acu_seconds_per_invoice: float = 0.005  # CPU of one small UPSERT, on top of the minimum
    ledger_io_per_invoice: float = 3.0  # heap + index page writes
    ledger_row_bytes: int = 1024
    # Secrets Manager: one certificate secret per company + the ledger's master secret
    companies: int = 100
    certificate_cache_seconds: float = 300.0  # SecretsManagerCertificateStore default TTL
    # CloudWatch
    log_bytes: Mapping[str, int] = field(
        default_factory=lambda: {
            "EmitFn START/END/REPORT": 450,
            "EmitFn EMF metrics line (log_metrics)": 400,
            "GetFn START/END/REPORT": 450,
            "API Gateway access log x2": 2 * 420,
            "Step Functions Express, level ALL (~8 events)": 8 * 330,
            "worker (received, settled)": 2 * 400,
        }
    )
    express_log_all: bool = True  # template: Logging Level ALL (ERROR logs failures only)
    # Powertools: InvoicesEmitted, ColdStart, ProcessorFn's 5 Reprocessed_*, SweeperFn's
    # StuckInvoices and InvoicesRedriven; the CertificatesRefused metric filter; Container
    # Insights.
    custom_metrics: int = 2 + 5 + 2 + 1 + 20
    # SweeperFn: one run per SweepScheduleExpression period, 16 PendingIndex queries each.
    sweeps_per_month: float = 12 * 24 * 30.5
    sweep_ms: float = 400.0
    sweep_memory_mb: int = 512
    # X-Ray (Tracing: Active on the functions, the API and the state machine)
    xray: bool = True
    xray_reservoir_per_second: float = 1.0  # the default sampling rule: 1/s, then 5%
    xray_rate: float = 0.05


def worker_task_hours(invoices: float, sizing: Sizing, workload: Workload) -> float:
    """Fargate task-hours a month: the minimum always on, more when the volume needs them."""
    base_hours = sizing.worker_min_tasks * HOURS_PER_MONTH
    busy_hours = invoices / (
        workload.worker_invoices_per_second * 3600 * workload.worker_target_utilization
    )
    return max(base_hours, busy_hours)


# ------------------------------------------------------------------------- network ----
@dataclass(frozen=True, slots=True)
class NetworkTraffic:
    """What crosses a NAT gateway (NetworkMode nat or existing): every byte the worker sends or
    receives, AWS APIs included (no VPC endpoints). Estimates, each with its reason."""

    # S3 GET xml/ + PUT signed/ and nfse/ (~13 KB, Workload.s3_document_bytes), the provider's
    # SOAP send and consult with the signed XML (~20 KB), SQS receive/delete, DynamoDB, the Data
    # API and Secrets Manager (~5 KB), TLS handshakes and HTTP headers (~10 KB).
    bytes_per_invoice: int = 48 * 1024
    # Idle long polls: one ReceiveMessage per 20 s per task (~2 KB with TLS and headers).
    idle_bytes_per_task_hour: int = 180 * 2 * 1024
    # Image pulls through the NAT: one per task start (deploys, scale-outs, replaced tasks).
    image_mb: int = 150
    task_starts_per_month: int = 30


@dataclass(frozen=True, slots=True)
class NetworkCost:
    """Monthly USD of each NetworkMode's route out, at one invoice volume."""

    volume: int
    public_ipv4: float  # public: one public IPv4 address per running worker task
    nat_hours: float  # nat: the NAT gateway's hours and its Elastic IP
    nat_processed_gb: float
    nat_processing: float  # nat and existing: every GB through the NAT

    @property
    def public(self) -> float:
        return self.public_ipv4

    @property
    def nat(self) -> float:
        return self.nat_hours + self.nat_processing


def network_cost(
    volume: int, prices: Prices, sizing: Sizing, workload: Workload, traffic: NetworkTraffic
) -> NetworkCost:
    net = prices["network"]
    task_hours = worker_task_hours(volume, sizing, workload)
    processed = (
        volume * traffic.bytes_per_invoice
        + task_hours * traffic.idle_bytes_per_task_hour
        + traffic.task_starts_per_month * traffic.image_mb * 1024**2
    ) / GB
    return NetworkCost(
        volume=volume,
        public_ipv4=task_hours * net["public_ipv4_per_hour"],
        nat_hours=HOURS_PER_MONTH * (net["nat_gateway_per_hour"] + net["public_ipv4_per_hour"]),
        nat_processed_gb=processed,
        nat_processing=processed * net["nat_gateway_per_gb_processed"],
    )


def network_table(
    volumes: Sequence[int],
    prices: Prices,
    sizing: Sizing,
    workload: Workload,
    traffic: NetworkTraffic = NetworkTraffic(),
) -> list[str]:
    """The route out of each NetworkMode (not in the totals above, which have no network line)."""
    net = prices["network"]
    out = [
        f"== Network: the worker's route out (template NetworkMode), {net['region']} list "
        "prices, USD per month",
        f"NAT gateway {net['nat_gateway_per_hour']}/h + {net['nat_gateway_per_gb_processed']}/GB "
        f"processed; public IPv4 {net['public_ipv4_per_hour']}/h per address (the NAT's too). "
        "Data transfer out to the prefeituras is the same in every mode and not counted.",
        f"{'invoices / month':>16}  {'public':>10}  {'nat':>10}  {'GB via NAT':>10}  "
        f"{'existing':>10}",
    ]
    for volume in volumes:
        route_cost = network_cost(volume, prices, sizing, sizing.applied_to(workload), traffic)
        out.append(
            f"{volume:>16,}  {usd(route_cost.public):>10}  {usd(route_cost.nat):>10}  "
            f"{route_cost.nat_processed_gb:>10.1f}  {usd(route_cost.nat_processing):>10}"
        )
    out += [
        "public: one public IPv4 address per running worker task (security group: HTTPS out "
        "only, nothing in); ProcessorFn outside the VPC.",
        "nat: one NAT gateway (hours + its address) and every byte the worker and ProcessorFn "
        "exchange, AWS APIs included; gateway endpoints for S3 and DynamoDB would take those off.",
        "existing: your NAT gateway's processing of this traffic (its hours are yours already).",
        "",
    ]
    return out


@dataclass(frozen=True, slots=True)
class Line:
    service: str
    item: str
    fixed: float = 0.0
    variable: float = 0.0
    per_request: bool = False  # part of the floor


def lambda_duration_ms(io_ms: float, cpu_ms: float, memory_mb: int) -> float:
    return io_ms + cpu_ms * max(1.0, FULL_VCPU_MB / memory_mb)


def lambda_cost(
    prices: Prices, invocations: float, memory_mb: int, duration_ms: float
) -> tuple[float, float]:
    """(request charge, GB-s charge) for `invocations` (billed per 1 ms)."""
    lam = prices["lambda"]
    requests = invocations * lam["per_million_requests"] / 1e6
    gb_seconds = invocations * math.ceil(duration_ms) / 1000 * memory_mb / 1024
    return requests, gb_seconds * lam["arm64_per_gb_second"]


def express_cost(prices: Prices, executions: float, workload: Workload) -> float:
    sfn = prices["step_functions"]
    seconds = math.ceil(workload.express_duration_ms / 100) * 0.1
    gb = math.ceil(workload.express_memory_mb / 64) * 64 / 1024
    per_run = (
        sfn["express_per_million_requests"] / 1e6 + seconds * gb * sfn["express_per_gb_second"]
    )
    return executions * float(per_run)


def standard_cost(prices: Prices, executions: float, transitions: int) -> float:
    per_transition = float(prices["step_functions"]["standard_per_1000_transitions"]) / 1000
    return executions * transitions * per_transition


def ddb_units(workload: Workload, sizes: Mapping[str, int]) -> dict[str, tuple[float, float]]:
    """Phase -> (write units, read units) per invoice."""
    out: dict[str, list[float]] = {}
    for phase, _call, kind, item in DDB_CALLS:
        size = sizes[item] + (workload.issued_item_extra_bytes if kind == "issued_write" else 0)
        units = out.setdefault(phase, [0.0, 0.0])
        share = workload.idempotency_share if kind.startswith("idempotent") else 1.0
        if kind.endswith("write"):
            units[0] += share * math.ceil(size / 1024)
        else:
            factor = 0.5 if kind == "get_read" and not workload.get_consistent else 1.0
            units[1] += share * factor * math.ceil(size / 4096)
    return {phase: (u[0], u[1]) for phase, u in out.items()}


def xray_traces(requests: float, workload: Workload) -> float:
    """Traces recorded by the default-style rule (reservoir per second, then a rate)."""
    if not workload.xray:
        return 0.0
    rate = requests / SECONDS_PER_MONTH
    reservoir = workload.xray_reservoir_per_second
    per_second = min(rate, reservoir) + workload.xray_rate * max(0.0, rate - reservoir)
    return per_second * SECONDS_PER_MONTH


def invoice_log_bytes(workload: Workload) -> int:
    return sum(
        size
        for source, size in workload.log_bytes.items()
        if workload.express_log_all or not source.startswith("Step Functions")
    )


def model(volume: int, prices: Prices, sizing: Sizing, workload: Workload) -> list[Line]:
    """Every line item of one month at `volume` invoices, service by service."""
    invoices = float(volume)
    return [
        *cloudfront_lines(invoices, prices, workload),
        *waf_lines(invoices, prices, workload),
        *api_gateway_lines(invoices, prices, workload),
        *lambda_api_lines(invoices, prices, sizing, workload),
        *dynamodb_lines(invoices, prices, workload),
        *s3_lines(invoices, prices, workload),
        *step_functions_lines(invoices, prices, sizing, workload),
        *fargate_lines(invoices, prices, sizing, workload),
        *sqs_lines(invoices, prices, sizing, workload),
        *aurora_lines(invoices, prices, sizing, workload),
        *secrets_manager_lines(invoices, prices, sizing, workload),
        *kms_lines(invoices, prices, sizing, workload),
        *sweeper_lines(prices, workload),
        *cloudwatch_lines(invoices, prices, sizing, workload),
        *xray_lines(invoices, prices, workload),
    ]


def api_requests(invoices: float, workload: Workload) -> float:
    """Requests through the edge and API Gateway a month (a POST and the GETs per invoice)."""
    return invoices * workload.api_requests_per_invoice


def cloudfront_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """CloudFront in front of the API: its HTTPS requests and the data out and to the origin."""
    if not workload.cloudfront:
        return []
    cloudfront = prices["cloudfront"]
    requests = api_requests(invoices, workload)
    return [
        Line(
            "CloudFront",
            "HTTPS requests",
            variable=requests * cloudfront["per_10k_https_requests"] / 1e4,
            per_request=True,
        ),
        Line(
            "CloudFront",
            "data out + to origin",
            variable=(
                requests * workload.response_bytes * cloudfront["data_out_per_gb"]
                + invoices * workload.post_body_bytes * cloudfront["data_to_origin_per_gb"]
            )
            / GB,
        ),
    ]


def waf_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """WAF: the web ACL and its rules each month, and every request it inspects."""
    waf = prices["waf"]
    requests = api_requests(invoices, workload)
    return [
        Line(
            "WAF",
            "web ACL + rules",
            fixed=waf["per_web_acl_month"] + workload.waf_rules * waf["per_rule_month"],
        ),
        Line(
            "WAF",
            "requests",
            variable=requests * waf["per_million_requests"] / 1e6,
            per_request=True,
        ),
    ]


def api_gateway_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """API Gateway requests, REST or HTTP API, on its price tiers."""
    tiers = prices["api_gateway"][
        "rest_per_million_tiers" if workload.api == "rest" else "http_per_million_tiers"
    ]
    requests = api_requests(invoices, workload)
    return [
        Line(
            "API Gateway",
            f"{workload.api.upper()} requests",
            variable=tiered(requests, tiers),
            per_request=True,
        )
    ]


def lambda_api_lines(
    invoices: float, prices: Prices, sizing: Sizing, workload: Workload
) -> list[Line]:
    """EmitFn and GetFn: requests (part of the floor) and GB-s with the billed INIT."""
    lines: list[Line] = []
    for name, calls, memory, io_ms, cpu_ms in (
        ("EmitFn", invoices, sizing.emit_memory_mb, workload.emit_io_ms, workload.emit_cpu_ms),
        (
            "GetFn",
            invoices * (workload.api_requests_per_invoice - 1),
            sizing.get_memory_mb,
            workload.get_io_ms,
            workload.get_cpu_ms,
        ),
    ):
        requests, duration = lambda_cost(
            prices, calls, memory, lambda_duration_ms(io_ms, cpu_ms, memory)
        )
        _, init = lambda_cost(
            prices,
            calls * workload.cold_start_share,
            memory,
            lambda_duration_ms(0, workload.init_cpu_ms, memory),
        )
        lines += [
            Line("Lambda", f"{name} requests", variable=requests, per_request=True),
            Line(
                "Lambda",
                f"{name} GB-s at {memory} MB (+ billed INIT)",
                variable=duration + init,
            ),
        ]
    return lines


def dynamodb_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """DynamoDB on demand: the request units of each phase, and the storage the month adds."""
    ddb = prices["dynamodb"]
    sizes = item_sizes()
    lines = [
        Line(
            "DynamoDB",
            f"{phase}: {write_units:g} WRU + {read_units:g} RRU per invoice",
            variable=invoices
            * (
                write_units * ddb["on_demand_per_million_write_units"]
                + read_units * ddb["on_demand_per_million_read_units"]
            )
            / 1e6,
            per_request=True,
        )
        for phase, (write_units, read_units) in ddb_units(workload, sizes).items()
    ]
    lines.append(
        Line(
            "DynamoDB",
            "storage added this month",
            variable=invoices
            * (sizes["invoice"] + workload.issued_item_extra_bytes)
            / GB
            * ddb["storage_per_gb_month"],
        )
    )
    return lines


def s3_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """S3: the PUTs and GETs per invoice, and the storage of the month's documents."""
    s3 = prices["s3"]
    return [
        Line(
            "S3",
            f"{workload.s3_puts_per_invoice} PUT per invoice",
            variable=invoices * workload.s3_puts_per_invoice * s3["put_per_1000"] / 1000,
            per_request=True,
        ),
        Line(
            "S3",
            f"{workload.s3_gets_per_invoice} GET/HEAD per invoice",
            variable=invoices * workload.s3_gets_per_invoice * s3["get_per_1000"] / 1000,
            per_request=True,
        ),
        Line(
            "S3",
            "storage of this month's documents",
            variable=invoices
            * workload.s3_document_bytes
            / GB
            * s3["standard_storage_per_gb_month"],
        ),
    ]


def step_functions_lines(
    invoices: float, prices: Prices, sizing: Sizing, workload: Workload
) -> list[Line]:
    """The emission state machine, Express or Standard as the template has it."""
    if sizing.state_machine_type == "EXPRESS":
        return [
            Line(
                "Step Functions",
                "Express requests + GB-s",
                variable=express_cost(prices, invoices, workload),
                per_request=True,
            )
        ]
    return [
        Line(
            "Step Functions",
            "Standard transitions",
            variable=standard_cost(prices, invoices, sizing.happy_path_states),
            per_request=True,
        )
    ]


def fargate_lines(
    invoices: float, prices: Prices, sizing: Sizing, workload: Workload
) -> list[Line]:
    """The worker on Fargate: the minimum of tasks always on, more when the volume needs them."""
    fargate = prices["fargate"]
    task_hour = (
        sizing.worker_vcpu * fargate["arm64_per_vcpu_hour"]
        + sizing.worker_memory_gb * fargate["arm64_per_gb_hour"]
    )
    base_hours = sizing.worker_min_tasks * HOURS_PER_MONTH
    task_hours = worker_task_hours(invoices, sizing, workload)
    return [
        Line("Fargate", f"{sizing.worker_min_tasks} task always on", fixed=base_hours * task_hour),
        Line("Fargate", "tasks above the minimum", variable=(task_hours - base_hours) * task_hour),
    ]


def sqs_lines(invoices: float, prices: Prices, sizing: Sizing, workload: Workload) -> list[Line]:
    """SQS: send (state machine), receive, delete, some visibility changes; idle long polls."""
    per_request = prices["sqs"]["standard_per_million_requests"] / 1e6
    per_invoice = (
        1 + workload.sqs_receives_per_invoice + 1 + workload.sqs_visibility_changes_per_invoice
    )
    base_hours = sizing.worker_min_tasks * HOURS_PER_MONTH
    return [
        Line(
            "SQS",
            f"{per_invoice:g} requests per invoice",
            variable=invoices * per_invoice * per_request,
            per_request=True,
        ),
        Line(
            "SQS",
            "idle long polls",
            fixed=base_hours * 3600 / workload.sqs_long_poll_seconds * per_request,
        ),
    ]


def aurora_lines(invoices: float, prices: Prices, sizing: Sizing, workload: Workload) -> list[Line]:
    """The Aurora Serverless v2 ledger through the Data API: minimum ACU, load and requests."""
    aurora = prices["aurora"]
    return [
        Line(
            "Aurora",
            f"{sizing.aurora_min_acu:g} ACU minimum",
            fixed=sizing.aurora_min_acu * HOURS_PER_MONTH * aurora["serverless_v2_per_acu_hour"],
        ),
        Line(
            "Aurora",
            "ACU above the minimum + I/O + storage",
            variable=invoices
            * (
                workload.ledger_acu_seconds_per_invoice
                / 3600
                * aurora["serverless_v2_per_acu_hour"]
                + workload.ledger_io_per_invoice * aurora["per_million_io_requests"] / 1e6
                + workload.ledger_row_bytes / GB * aurora["storage_per_gb_month"]
            ),
        ),
        Line(
            "Aurora",
            "Data API requests",
            variable=invoices
            * workload.ledger_requests_per_invoice
            * aurora["data_api_per_million_requests"]
            / 1e6,
            per_request=True,
        ),
    ]


def certificate_fetches(invoices: float, sizing: Sizing, workload: Workload) -> float:
    """GetSecretValue calls a month: each task caches a company's certificate for a TTL."""
    tasks = worker_task_hours(invoices, sizing, workload) / HOURS_PER_MONTH
    return min(
        invoices,
        tasks * workload.companies * SECONDS_PER_MONTH / workload.certificate_cache_seconds,
    )


def secrets_manager_lines(
    invoices: float, prices: Prices, sizing: Sizing, workload: Workload
) -> list[Line]:
    """Secrets Manager: a certificate secret per company and the ledger's, and the fetches."""
    secrets = prices["secrets_manager"]
    return [
        Line(
            "Secrets Manager",
            f"{workload.companies} certificate secrets + the ledger's two (master, nfse_app)",
            fixed=(workload.companies + 2) * secrets["per_secret_month"],
        ),
        Line(
            "Secrets Manager",
            "GetSecretValue (cached)",
            variable=certificate_fetches(invoices, sizing, workload)
            * secrets["per_10k_api_calls"]
            / 1e4,
        ),
    ]


def kms_lines(invoices: float, prices: Prices, sizing: Sizing, workload: Workload) -> list[Line]:
    """KMS: the keys, DynamoDB table-key refreshes (about every 5 min per table), S3 with a
    bucket key, and one Decrypt per secret fetch."""
    kms = prices["kms"]
    refreshes = sizing.dynamodb_tables * 12 * HOURS_PER_MONTH
    s3_requests = invoices * (workload.s3_puts_per_invoice + workload.s3_gets_per_invoice)
    secret_calls = certificate_fetches(invoices, sizing, workload)
    return [
        Line(
            "KMS",
            f"{sizing.kms_keys} key + DynamoDB table keys",
            fixed=sizing.kms_keys * kms["per_key_month"]
            + refreshes * kms["per_10k_requests"] / 1e4,
        ),
        Line(
            "KMS",
            "S3 (bucket key) + secret decrypts",
            variable=(s3_requests * (1 - workload.s3_bucket_key_kms_reduction) + secret_calls)
            * kms["per_10k_requests"]
            / 1e4,
        ),
    ]


def sweeper_lines(prices: Prices, workload: Workload) -> list[Line]:
    """SweeperFn on its schedule: the invocations and their index queries."""
    requests, duration = lambda_cost(
        prices, workload.sweeps_per_month, workload.sweep_memory_mb, workload.sweep_ms
    )
    queries = (
        workload.sweeps_per_month
        * 16
        * prices["dynamodb"]["on_demand_per_million_read_units"]
        / 1e6
    )
    return [
        Line(
            "Lambda",
            "SweeperFn schedule (and its index queries)",
            fixed=requests + duration + queries,
        )
    ]


def cloudwatch_lines(
    invoices: float, prices: Prices, sizing: Sizing, workload: Workload
) -> list[Line]:
    """CloudWatch: logs (ingested and one month kept), custom metrics and alarm metrics."""
    cloudwatch = prices["cloudwatch"]
    per_invoice_log = invoice_log_bytes(workload)
    log_bytes = invoices * per_invoice_log
    alarm_metrics = sizing.alarms + sizing.autoscaling_alarm_metrics
    return [
        Line(
            "CloudWatch",
            f"logs {per_invoice_log / 1024:.1f} KB per invoice",
            variable=log_bytes
            / GB
            * (cloudwatch["logs_ingestion_per_gb"] + cloudwatch["logs_storage_per_gb_month"]),
        ),
        Line(
            "CloudWatch",
            f"{workload.custom_metrics} metrics + {alarm_metrics} alarm metrics",
            fixed=workload.custom_metrics * cloudwatch["custom_metric_month"]
            + alarm_metrics * cloudwatch["standard_alarm_metric_month"],
        ),
    ]


def xray_lines(invoices: float, prices: Prices, workload: Workload) -> list[Line]:
    """X-Ray: the traces the sampling rule records."""
    if not workload.xray:
        return []
    traces = xray_traces(api_requests(invoices, workload), workload)
    return [
        Line(
            "X-Ray",
            f"traces recorded ({workload.xray_rate:.0%} + "
            f"{workload.xray_reservoir_per_second:g}/s sampled)",
            variable=traces * prices["xray"]["per_million_traces_recorded"] / 1e6,
        )
    ]


@dataclass(frozen=True, slots=True)
class Summary:
    volume: int
    fixed: float
    variable: float
    floor: float
    by_service: dict[str, tuple[float, float]]  # service -> (fixed, variable)

    @property
    def total(self) -> float:
        return self.fixed + self.variable

    @property
    def per_invoice(self) -> float:
        return self.total / self.volume

    @property
    def variable_per_million(self) -> float:
        return self.variable / self.volume * 1e6

    @property
    def floor_per_million(self) -> float:
        return self.floor / self.volume * 1e6

    def dominant(self, top: int = 3) -> list[tuple[str, float]]:
        ranked = sorted(self.by_service.items(), key=lambda kv: -kv[1][1])
        return [(name, v / self.volume * 1e6) for name, (_, v) in ranked[:top]]


def summarize(volume: int, lines: Iterable[Line]) -> Summary:
    by_service: dict[str, tuple[float, float]] = {}
    fixed = variable = floor = 0.0
    for line in lines:
        service_fixed, service_variable = by_service.get(line.service, (0.0, 0.0))
        by_service[line.service] = (service_fixed + line.fixed, service_variable + line.variable)
        fixed += line.fixed
        variable += line.variable
        floor += line.variable if line.per_request else 0.0
    return Summary(volume, fixed, variable, floor, by_service)


# ------------------------------------------------------------------ design choices ----
SCENARIOS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("HTTP API instead of REST (quotas by WAF rate rules, no usage plans)", {"api": "http"}),
    (
        "unsigned XML in the SQS message, no xml/ object (-1 PUT, -1 GET)",
        {"s3_puts_per_invoice": 2, "s3_gets_per_invoice": 1, "emit_io_ms": 40.0},
    ),
    (
        "provider answer gzip-inlined in the ISSUED item, no nfse/ object",
        {"s3_puts_per_invoice": 2, "issued_item_extra_bytes": 1500},
    ),
    ("WAF on the regional API, no CloudFront", {"cloudfront": False}),
    ("GET with an eventually consistent read", {"get_consistent": False}),
)


def apply(workload: Workload, changes: Mapping[str, Any]) -> Workload:
    return replace(workload, **changes)


def combined(workload: Workload) -> Workload:
    """Every change of SCENARIOS at once (the two S3 ones remove one PUT each)."""
    for _, changes in SCENARIOS:
        rest = {k: v for k, v in changes.items() if k != "s3_puts_per_invoice"}
        workload = apply(workload, rest)
    return replace(workload, s3_puts_per_invoice=max(1, workload.s3_puts_per_invoice - 2))


# --------------------------------------------------------------------------- report ----
def usd(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 0.01:
        return f"{value:.6f}"
    return f"{value:,.2f}"


def report(
    volumes: Sequence[int], prices: Prices, sizing: Sizing, workload: Workload
) -> tuple[str, list[Summary]]:
    workload = sizing.applied_to(workload)
    out: list[str] = [
        f"AWS list prices {prices['region']} as of {prices['as_of']} ({PRICES.name}); "
        f"USD per month; no free tier.",
        f"Sizes from template.yaml: EmitFn {sizing.emit_memory_mb} MB, "
        f"GetFn {sizing.get_memory_mb} MB, worker {sizing.worker_vcpu:g} vCPU / "
        f"{sizing.worker_memory_gb:g} GB x min {sizing.worker_min_tasks}, Aurora min "
        f"{sizing.aurora_min_acu:g} ACU (prod), state machine {sizing.state_machine_type}.",
        "",
    ]
    summaries: list[Summary] = []
    for volume in volumes:
        lines = model(volume, prices, sizing, workload)
        summary = summarize(volume, lines)
        summaries.append(summary)
        out.append(f"== {volume:,} invoices / month")
        width = max(len(f"{ln.service}: {ln.item}") for ln in lines)
        out.append(
            f"{'service: item'.ljust(width)}  {'fixed':>10}  {'variable':>10}  {'per M inv.':>10}"
        )
        for ln in lines:
            out.append(
                f"{f'{ln.service}: {ln.item}'.ljust(width)}  {usd(ln.fixed):>10}  "
                f"{usd(ln.variable):>10}  {usd(ln.variable / volume * 1e6):>10}"
                f"{'  *' if ln.per_request else ''}"
            )
        verdict = "met" if summary.variable_per_million < TARGET_PER_MILLION else "MISSED"
        out += [
            f"fixed baseline {usd(summary.fixed)}; variable {usd(summary.variable)}; "
            f"total {usd(summary.total)}; "
            f"per invoice {summary.per_invoice:.7f}",
            f"variable per million invoices {usd(summary.variable_per_million)} "
            f"(target < {TARGET_PER_MILLION:g}: {verdict}); "
            f"floor (* per-request charges) {usd(summary.floor_per_million)} per million",
            "dominant (variable per million): "
            + ", ".join(f"{k} {usd(v)}" for k, v in summary.dominant()),
            "",
        ]
    out += express_vs_standard(prices, sizing, workload)
    out += memory_table(prices, workload)
    out += scenarios_table(prices, sizing, workload)
    return "\n".join(out), summaries


def express_vs_standard(prices: Prices, sizing: Sizing, workload: Workload) -> list[str]:
    express = express_cost(prices, 1e6, workload)
    states = sizing.happy_path_states
    return [
        "== Step Functions per million invoices",
        f"Express (request + {workload.express_memory_mb} MB x "
        f"{workload.express_duration_ms:g} ms): "
        f"{usd(express)}",
        f"Standard, {states} transition(s) (states on the happy path): "
        f"{usd(standard_cost(prices, 1e6, states))}",
        f"Standard, {states + 2} transitions (with start and end, as the template comment "
        f"counts): {usd(standard_cost(prices, 1e6, states + 2))}",
        f"Standard on its own: {standard_cost(prices, 1e6, states) / TARGET_PER_MILLION:.0%} "
        f"of the ${TARGET_PER_MILLION:g}/M target; Express: {express / TARGET_PER_MILLION:.0%}.",
        "",
    ]


def emit_at_memory(prices: Prices, workload: Workload, memory: int) -> tuple[float, float, float]:
    """EmitFn at `memory` MB: (duration ms, cold start ms, USD per million with billed INIT)."""
    duration = lambda_duration_ms(workload.emit_io_ms, workload.emit_cpu_ms, memory)
    init = lambda_duration_ms(0, workload.init_cpu_ms, memory)
    req, dur = lambda_cost(prices, 1e6, memory, duration)
    _, init_cost = lambda_cost(prices, 1e6 * workload.cold_start_share, memory, init)
    return duration, init, req + dur + init_cost


def memory_table(prices: Prices, workload: Workload) -> list[str]:
    out = [
        "== EmitFn memory size (per million invoices; CPU part scales with memory, I/O does not)",
        f"{'MB':>6}  {'duration ms':>11}  {'cold start ms':>13}  {'USD/M':>7}",
    ]
    for memory in MEMORY_SIZES:
        duration, init, cost = emit_at_memory(prices, workload, memory)
        out.append(f"{memory:>6}  {duration:>11.1f}  {init:>13.0f}  {usd(cost):>7}")
    out.append("")
    return out


def scenarios_table(
    prices: Prices, sizing: Sizing, workload: Workload, volume: int = REFERENCE_VOLUME
) -> list[str]:
    base = summarize(volume, model(volume, prices, sizing, workload)).variable_per_million
    out = [f"== Design changes: variable USD per million at {volume:,}/month (now {usd(base)})"]
    for name, changes in SCENARIOS:
        after = summarize(
            volume, model(volume, prices, sizing, apply(workload, changes))
        ).variable_per_million
        out.append(f"{usd(after - base):>7}  {name}")
    every = summarize(
        volume, model(volume, prices, sizing, combined(workload))
    ).variable_per_million
    out += [f"all of them: {usd(every)} per million", ""]
    return out


# ------------------------------------------------------------------- bench section ----
def rows(ctx: Context) -> list[Row]:
    """Section 5 of `make bench`: the summary at the default volumes, with measured CPU figures."""
    prices, sizing = load_prices(), Sizing.from_files()
    workload = sizing.applied_to(workload_from_measurements(Workload(), ctx.measured))
    _, summaries = report(DEFAULT_VOLUMES, prices, sizing, workload)
    ctx.notes["cost"] = note(
        prices, sizing, workload, worker_measured="worker_invoices_per_second" in ctx.measured
    )
    out: list[Row] = []
    for summary in summaries:
        out.append(
            Row(
                f"{summary.volume:,} invoices/month",
                f"${usd(summary.total)} (fixed {usd(summary.fixed)} + "
                f"variable {usd(summary.variable)}); "
                f"${summary.per_invoice:.6f}/invoice",
                f"variable < ${TARGET_PER_MILLION:g}/M",
                summary.variable_per_million < TARGET_PER_MILLION,
                f"variable ${usd(summary.variable_per_million)}/M, "
                f"floor ${usd(summary.floor_per_million)}/M; top: "
                + ", ".join(f"{k} {usd(v)}" for k, v in summary.dominant()),
            )
        )
    express = express_cost(prices, 1e6, workload)
    standard = standard_cost(prices, 1e6, sizing.happy_path_states)
    out.append(
        Row("Step Functions per M: Express vs Standard", f"${usd(express)} vs ${usd(standard)}")
    )
    for memory in (256, 512, 1024):
        duration = lambda_duration_ms(workload.emit_io_ms, workload.emit_cpu_ms, memory)
        requests_cost, duration_cost = lambda_cost(prices, 1e6, memory, duration)
        out.append(
            Row(
                f"EmitFn at {memory} MB, per M",
                f"${usd(requests_cost + duration_cost)}",
                note=f"{duration:.0f} ms; "
                f"cold start {lambda_duration_ms(0, workload.init_cpu_ms, memory):.0f} ms",
            )
        )
    net = prices["network"]
    for volume in DEFAULT_VOLUMES:
        route_cost = network_cost(volume, prices, sizing, workload, NetworkTraffic())
        out.append(
            Row(
                f"route out at {volume:,}/month ({net['region']}), NetworkMode public / nat / "
                "existing",
                f"${usd(route_cost.public)} / ${usd(route_cost.nat)} / "
                f"${usd(route_cost.nat_processing)}",
                note=f"{route_cost.nat_processed_gb:.1f} GB through a NAT; not in the totals above "
                "(`make cost` explains each mode)",
            )
        )
    reference = model(REFERENCE_VOLUME, prices, sizing, combined(workload))
    best = summarize(REFERENCE_VOLUME, reference).variable_per_million
    out.append(
        Row(
            "with every design change of `make cost`",
            f"${usd(best)}/M",
            f"variable < ${TARGET_PER_MILLION:g}/M",
            best < TARGET_PER_MILLION,
        )
    )
    return out


def note(prices: Prices, sizing: Sizing, workload: Workload, *, worker_measured: bool) -> str:
    """The text under section 5's table: the model's output, then what to read in it."""
    text, summaries = report(DEFAULT_VOLUMES, prices, sizing, workload)
    return (
        "`python -m bench.cost` with the CPU figures measured above "
        f"(EmitFn {workload.emit_cpu_ms:g} ms CPU at one vCPU, INIT {workload.init_cpu_ms:g} ms; "
        f"worker {workload.worker_invoices_per_second:g} invoices/s per task, "
        f"{'measured' if worker_measured else 'assumed'}). "
        "`*` marks the per-request charges that make up the floor.\n\n"
        "```text\n" + text + "\n```\n\n" + findings(prices, sizing, workload, summaries)
    )


def findings(
    prices: Prices, sizing: Sizing, workload: Workload, summaries: Sequence[Summary]
) -> str:
    """Reading the cost model: every figure from its inputs (prices.json, template.yaml, the
    workload with this run's measurements) and from its results."""
    lines = model(REFERENCE_VOLUME, prices, sizing, workload)
    ref = summarize(REFERENCE_VOLUME, lines)
    smallest = min(summaries, key=lambda s: s.volume, default=ref)
    bullets = [
        _target_finding(prices, workload, lines, ref),
        _changes_finding(prices, sizing, workload, ref),
        _step_functions_finding(prices, sizing, workload),
        _memory_finding(prices, sizing, workload),
        f"- Fixed baseline, ${usd(ref.fixed)} a month: "
        + ", ".join(
            f"{ln.service}: {ln.item} ${usd(ln.fixed)}"
            for ln in sorted((ln for ln in lines if ln.fixed), key=lambda ln: -ln.fixed)
        )
        + f". At {smallest.volume:,} invoices a month the baseline is "
        f"{smallest.fixed / smallest.total:.1%} of the bill.",
        _storage_finding(workload, lines),
        "- Not modelled: NAT gateway or VPC endpoints for the worker (billed per hour and per "
        "GB), data transfer to the municipalities, free tiers.",
    ]
    return "\n".join(["**Reading the cost model.**", "", *bullets]) + "\n"


def _target_finding(prices: Prices, workload: Workload, lines: Sequence[Line], ref: Summary) -> str:
    target, per_m = TARGET_PER_MILLION, 1e6 / ref.volume
    at = f"at {ref.volume:,} invoices a month"
    if ref.floor_per_million >= target:
        verdict = (
            "is missed as designed: the floor of per-request charges alone is "
            f"${usd(ref.floor_per_million)}/M {at}"
        )
    elif ref.variable_per_million >= target:
        verdict = (
            f"is missed: ${usd(ref.variable_per_million)}/M {at}, though the floor of "
            f"per-request charges (${usd(ref.floor_per_million)}/M) is under it"
        )
    else:
        verdict = f"is met: ${usd(ref.variable_per_million)}/M {at}"
    largest = sorted(lines, key=lambda ln: -ln.variable)[:4]
    put = float(prices["s3"]["put_per_1000"]) * 1000  # USD per million PUTs
    puts = workload.s3_puts_per_invoice * put
    return (
        f"- The target (variable cost under ${target:g} per million invoices) {verdict}. "
        "The largest variable items: "
        + "; ".join(f"{ln.service}: {ln.item} ${usd(ln.variable * per_m)}/M" for ln in largest)
        + f". S3 bills ${put:g} per million PUTs, so the {workload.s3_puts_per_invoice} PUTs per "
        f"invoice (one per stored document) are ${usd(puts)}/M, {puts / target:.0%} of the "
        f"target, for documents of "
        f"{workload.s3_document_bytes / workload.s3_puts_per_invoice / 1024:.1f} KB "
        "on average."
    )


def _changes_finding(prices: Prices, sizing: Sizing, workload: Workload, ref: Summary) -> str:
    volume = ref.volume
    changes = []
    for name, change in SCENARIOS:
        after = summarize(volume, model(volume, prices, sizing, apply(workload, change)))
        changes.append(f"{name} ({usd(after.variable_per_million - ref.variable_per_million)})")
    every = summarize(
        volume, model(volume, prices, sizing, combined(workload))
    ).variable_per_million
    return (
        "- The design changes, each with what it changes in the variable cost per million at "
        f"{volume:,} invoices a month (the table above): "
        + "; ".join(changes)
        + f". Together they bring the model to ${usd(every)}/M, "
        + ("under" if every < TARGET_PER_MILLION else "still over")
        + " the target; none of them touches the invariants (the signed document is still "
        "stored before the first send)."
    )


def _step_functions_finding(prices: Prices, sizing: Sizing, workload: Workload) -> str:
    states = sizing.happy_path_states
    per_transition = float(prices["step_functions"]["standard_per_1000_transitions"]) * 1000
    standard = standard_cost(prices, 1e6, states)
    express = express_cost(prices, 1e6, workload)
    sfn_log = sum(
        size for source, size in workload.log_bytes.items() if source.startswith("Step Func")
    )
    cw = prices["cloudwatch"]
    log_cost = sfn_log / GB * (cw["logs_ingestion_per_gb"] + cw["logs_storage_per_gb_month"]) * 1e6
    if workload.express_log_all:
        logging = (
            f"Its logging level ALL adds {sfn_log / 1024:.1f} KB of logs per run "
            f"(${usd(log_cost)}/M of CloudWatch); ERROR would keep the failures only."
        )
    else:
        logging = (
            f"Its logging level is {sizing.express_log_level}: ALL would add "
            f"{sfn_log / 1024:.1f} KB of logs per run (${usd(log_cost)}/M of CloudWatch)."
        )
    kind = (
        "Express, not Standard"
        if sizing.state_machine_type == "EXPRESS"
        else f"{sizing.state_machine_type} (the template's), not Express"
    )
    return (
        f"- {kind}: Standard bills ${per_transition:g} per million state transitions, "
        f"${usd(standard)}/M for the {states} state{'s' if states != 1 else ''} of the happy "
        f"path ({standard / TARGET_PER_MILLION:.0%} of the target); Express is "
        f"${usd(express)}/M (request + {workload.express_memory_mb} MB x "
        f"{workload.express_duration_ms:g} ms)."
        f" {logging}"
    )


def _memory_finding(prices: Prices, sizing: Sizing, workload: Workload) -> str:
    points = {memory: emit_at_memory(prices, workload, memory) for memory in MEMORY_SIZES}
    cheapest = min(points, key=lambda memory: points[memory][2])
    chosen = sizing.emit_memory_mb
    duration, init, cost = emit_at_memory(prices, workload, chosen)
    cpu = duration - workload.emit_io_ms
    waits = "mostly the wait on" if workload.emit_io_ms > cpu else "mostly CPU, more than"
    text = (
        f"- Lambda memory: EmitFn's duration is {waits} its {EMIT_AWS_CALLS} AWS calls "
        f"({workload.emit_io_ms:g} ms of I/O, {cpu:.1f} ms of CPU at {chosen} MB), "
        f"so {cheapest} MB "
        f"is the cheapest (${usd(points[cheapest][2])}/M), but there its INIT runs at "
        f"{cheapest / FULL_VCPU_MB:.2f} of a vCPU and takes {points[cheapest][1] / 1000:.1f} s,"
        " and a cold POST risks the client's timeout."
    )
    if chosen != cheapest:
        text += (
            f" The template's {chosen} MB costs ${usd(cost - points[cheapest][2])}/M more and "
            f"cuts the cold start {points[cheapest][1] / init:.1f}x, to {init:,.0f} ms."
        )
    return text + f" GetFn runs at {sizing.get_memory_mb} MB for one GetItem."


def _storage_finding(workload: Workload, lines: Sequence[Line]) -> str:
    def stored(service: str) -> float:
        return sum(ln.variable for ln in lines if ln.service == service and "storage" in ln.item)

    per_m = 1e6 / REFERENCE_VOLUME
    documents, item = stored("S3") * per_m, stored("DynamoDB") * per_m
    months = 12 * RETENTION_YEARS
    per_document_kb = workload.s3_document_bytes / workload.s3_puts_per_invoice / 1024
    item_kb = (item_sizes()["invoice"] + workload.issued_item_extra_bytes) / 1024
    return (
        "- Storage is billed every month it is kept: the "
        f"{workload.s3_document_bytes / 1024:.0f} KB "
        f"of documents and the {item_kb:.1f} KB item per invoice cost ${usd(documents)}/M and "
        f"${usd(item)}/M per month of retention; over the {RETENTION_YEARS} years fiscal "
        f"documents are kept that is ${usd(documents * months)}/M + ${usd(item * months)}/M "
        "(plus PITR and versions), not in the monthly figure. S3 Standard-IA and Glacier "
        f"Instant Retrieval bill every object as at least {IA_MINIMUM_OBJECT_KB} KB, "
        f"{IA_MINIMUM_OBJECT_KB / per_document_kb:.0f}x a document of "
        f"{per_document_kb:.1f} KB, unless the documents are bundled (e.g. one object per "
        "company and month) before they age out."
    )


def workload_from_measurements(workload: Workload, measured: Mapping[str, float]) -> Workload:
    """The CPU figures the benchmarks measured, scaled to a Lambda vCPU (`LAMBDA_CPU_FACTOR`)."""
    changes: dict[str, Any] = {}
    if "emit_path_seconds" in measured and "botocore_call_seconds" in measured:
        calls = EMIT_AWS_CALLS * measured["botocore_call_seconds"]
        cpu = measured["emit_path_seconds"] + calls
        changes["emit_cpu_ms"] = round((cpu * 1e3 + POWERTOOLS_MS) * LAMBDA_CPU_FACTOR, 2)
        get_cpu = measured["botocore_call_seconds"] * 1e3 + POWERTOOLS_MS
        changes["get_cpu_ms"] = round(get_cpu * LAMBDA_CPU_FACTOR, 2)
    if "cold_start_emit_seconds" in measured:
        changes["init_cpu_ms"] = round(
            measured["cold_start_emit_seconds"] * 1e3 * LAMBDA_CPU_FACTOR
        )
    if "worker_invoices_per_second" in measured:
        changes["worker_invoices_per_second"] = measured["worker_invoices_per_second"]
    return replace(workload, **changes)


POWERTOOLS_MS = 1.0  # resolver, logger context, tracer, metrics flush per invocation (estimate)
LAMBDA_CPU_FACTOR = 1.5  # a Graviton Lambda vCPU against this bench machine's core (estimate)


# ----------------------------------------------------------------------------- CLI ----
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--volume", type=int, action="append", help="invoices per month (repeat)")
    parser.add_argument("--prices", type=Path, default=PRICES)
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    defaults = Workload()
    parser.add_argument(
        "--worker-throughput",
        type=float,
        default=defaults.worker_invoices_per_second,
        help="invoices/s per Fargate task",
    )
    parser.add_argument("--companies", type=int, default=defaults.companies)
    parser.add_argument("--emit-cpu-ms", type=float, default=defaults.emit_cpu_ms)
    parser.add_argument("--emit-io-ms", type=float, default=defaults.emit_io_ms)
    args = parser.parse_args(argv)
    workload = replace(
        defaults,
        worker_invoices_per_second=args.worker_throughput,
        companies=args.companies,
        emit_cpu_ms=args.emit_cpu_ms,
        emit_io_ms=args.emit_io_ms,
    )
    text, _ = report(
        args.volume or list(DEFAULT_VOLUMES),
        load_prices(args.prices),
        Sizing.from_files(args.template),
        workload,
    )
    print(text)
    print(
        "\n".join(
            network_table(
                args.volume or list(DEFAULT_VOLUMES),
                load_prices(args.prices),
                Sizing.from_files(args.template),
                workload,
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
