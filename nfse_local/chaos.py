"""`make chaos`: many invoices through the embedded stack while the provider misbehaves, the
workers are killed (SIGKILL) and EmitFn dies mid-request, then proof that none was lost, none
issued twice.

    python -m nfse_local.chaos --invoices 2000 --kills 6 --seed 7

The stack runs as in AWS (IAM enforced per role, the template's waits and timeouts; the list of
what still differs is nfse_local/fidelity.py), with two worker tasks at once. The invoices go
over HTTP as both sample tenants and all their CNPJs, each with its Idempotency-Key; after a
lost answer a client retries with the same key, or (some of them) gives up. The faults:
- the provider: temporary failures (HTTP 5xx, SOAP Faults, some inside HTTP 200, dropped
  connections, answers that never come), answers lost after issuing, timeouts after issuing,
  answers dripping a byte at a time, a consult that does not see an NFS-e for a few seconds
  after it was issued, and a consult whose "not found" comes with an internal error;
- EmitFn dies (its process exits) just before its XML or its StartExecution, or loses
  StartExecution's answer;
- a worker is killed at random moments and restarted.
At the end the faults stop, ProcessorFn reprocesses the DLQ and SweeperFn re-drives what
nothing works on, until every invoice is final; then the run checks the invariants of
docs/architecture.md:

- every accepted invoice is ISSUED or FAILED (nothing lost or stuck);
- the provider issued exactly one NFS-e per ISSUED invoice, the one DynamoDB records, and
  none for a FAILED invoice;
- DynamoDB and the ledger agree row by row (status, NFS-e number, total);
- no RPS number (cnpj, serie, tipo) was handed out twice;
- no status moved backwards: DynamoDB and the ledger are sampled during the whole run and
  every observed sequence is monotonic by nfse_core.domain.status.RANK;
- no invoice is stuck: the ones whose client gave up are final too (found by their key).

It prints a report and exits non-zero when any invariant fails.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from nfse_core.domain.ids import keyed_invoice_id
from nfse_core.domain.invoice import InvoiceRecord
from nfse_core.domain.status import FINAL, RANK, InvoiceStatus
from nfse_core.store.invoices import from_item
from nfse_local.runtime import FAULTS_ENV
from nfse_local.samples import TENANTS, invoice_body
from nfse_local.simulator import Forced
from nfse_local.stack import ROOT, DeploymentOptions, LocalStack, StackOptions, WorkerOptions

log = logging.getLogger("nfse_local.chaos")

ERROR_STATUSES = (500, 502, 503, 504)
_SELECT_LEDGER = "SELECT invoice_id, status, nfse_number, total FROM nfse.invoices"


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    invoices: int = 2000
    kills: int = 6
    seed: int = 1
    post_threads: int = 4
    # Template parameters (deployment choices, not deviations): two worker tasks of this
    # many threads; redelivery to the DLQ after 3 receives; the sweeper acting within minutes.
    workers: int = 2
    worker_concurrency: int = 8
    max_receive_count: int = 3
    sweep_redrive_after: int = 60
    sweep_live_window: int = 150
    # The provider: about a quarter of SOAP requests fail in some way; 5-50 ms of latency.
    latency: tuple[float, float] = (0.005, 0.05)
    error_rate: float = 0.08
    soap_fault_rate: float = 0.05
    soap_fault_200_rate: float = 0.04
    timeout_rate: float = 0.02
    # Longer than the client's read timeout (the simulator entry's 10 s): a real timeout.
    timeout_seconds: float = 11.0
    lost_rate: float = 0.04
    issued_then_timeout_rate: float = 0.02
    drip_rate: float = 0.005
    # Within the simulator entry's settle time (10 s, providers.json).
    consult_lag_seconds: float = 3.0
    consult_internal_error_rate: float = 0.05
    # EmitFn: its process dies before the XML or StartExecution, or StartExecution's answer
    # is lost; a client that got no answer gives up instead of retrying this often.
    emit_die_before_xml: float = 0.01
    emit_die_before_start: float = 0.02
    emit_lose_start_answer: float = 0.02
    give_up_rate: float = 0.3
    # RPS numbers the provider refuses (HTTP 503) until the faults stop: their invoices go
    # through every redelivery to the DLQ, and ProcessorFn settles them.
    dlq_numbers: int = 2
    sample_interval: float = 0.5
    settle_timeout: float = 1200.0
    use_postgres: bool = True
    state_dir: Path | None = None


@dataclass
class Posted:
    index: int
    tenant: str
    cnpj: str
    total: Decimal
    invoice_id: str | None
    status_code: int
    tries: int


@dataclass
class Abandoned:
    """A POST whose client got no answer and did not retry: its invoice may exist."""

    index: int
    tenant: str
    key: str


@dataclass
class ChaosReport:
    config: ChaosConfig
    posted: int = 0
    accepted: int = 0
    refused: int = 0
    abandoned: int = 0
    abandoned_found: int = 0
    post_retries: int = 0
    emit_deaths: int = 0
    emit_unavailable: int = 0
    sweeps: dict[str, int] = field(default_factory=dict)
    sweeper_runs: int = 0
    issued: int = 0
    failed: int = 0
    failed_codes: dict[str, int] = field(default_factory=dict)
    # Of the accepted invoices only (a 201 was answered): EMIT_INCOMPLETE must never be here.
    accepted_failed_codes: dict[str, int] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    rps_reused: int = 0
    backward_moves: int = 0
    simulator_issued: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    requests_by_operation: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    dlq_runs: int = 0
    samples: int = 0
    ledger_samples: int = 0
    transitions_seen: int = 0
    ledger: str = ""
    startup_seconds: float = 0.0
    post_seconds: float = 0.0
    wall_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def throughput(self) -> float:
        return self.accepted / self.wall_seconds if self.wall_seconds else 0.0

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (`--json`), for tests and dashboards."""
        return {
            "invoices": self.config.invoices,
            "seed": self.config.seed,
            "posted": self.posted,
            "accepted": self.accepted,
            "refused": self.refused,
            "abandoned": self.abandoned,
            "abandonedFound": self.abandoned_found,
            "clientRetries": self.post_retries,
            "emitDeaths": self.emit_deaths,
            "emitUnavailable": self.emit_unavailable,
            "workers": self.config.workers,
            "sweeps": self.sweeps,
            "sweeperRuns": self.sweeper_runs,
            "issued": self.issued,
            "failed": self.failed,
            "failedCodes": self.failed_codes,
            "acceptedFailedCodes": self.accepted_failed_codes,
            "stuck": self.stuck,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "mismatches": self.mismatches,
            "rpsReused": self.rps_reused,
            "backwardMoves": self.backward_moves,
            "simulatorIssued": self.simulator_issued,
            "faults": self.faults,
            "requestsByOperation": self.requests_by_operation,
            "kills": self.kills,
            "dlq": self.dlq,
            "dlqRuns": self.dlq_runs,
            "samples": self.samples,
            "ledgerSamples": self.ledger_samples,
            "transitionsSeen": self.transitions_seen,
            "ledger": self.ledger,
            "wallSeconds": round(self.wall_seconds, 2),
            "throughput": round(self.throughput, 2),
            "violations": self.violations,
            "ok": self.ok,
            # Each invariant and the number of violations found (docs/reliability.md).
            "invariants": {
                "every invoice final (none lost or stuck)": self.lost + len(self.stuck),
                "one NFS-e per ISSUED invoice, none for another": self.duplicated,
                "DynamoDB and the ledger agree": self.mismatches,
                "no RPS number used twice": self.rps_reused,
                "no status moved backwards": self.backward_moves,
            },
            "config": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self.config).items()
                if k != "state_dir"
            },
        }

    def lines(self) -> list[str]:
        c = self.config
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        dlq = ", ".join(f"{k} {v}" for k, v in self.dlq.items() if v) or "nothing"
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_codes.items()))
        lines = [
            "",
            f"chaos run: {c.invoices} invoices, seed {c.seed}, ledger {self.ledger}",
            f"  invoices posted      {self.posted} (accepted {self.accepted}, refused"
            f" {self.refused}, given up {self.abandoned} of which {self.abandoned_found}"
            f" recorded; client retries {self.post_retries})",
            f"  EmitFn faults        {self.emit_deaths} deaths mid-request,"
            f" {self.emit_unavailable} answers 503",
            f"  ISSUED               {self.issued}",
            f"  FAILED               {self.failed}" + (f" ({failed})" if failed else ""),
            f"  faults injected      {sum(self.faults.values())}: {faults}",
            f"  SOAP requests        {sum(self.requests_by_operation.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.requests_by_operation.items())),
            f"  worker kills         {self.kills} (SIGKILL, restarted; {c.workers} workers)",
            f"  DLQ reprocessed      {dlq} ({self.dlq_runs} ProcessorFn runs)",
            "  swept                "
            + (", ".join(f"{k} {v}" for k, v in self.sweeps.items() if v) or "nothing")
            + f" ({self.sweeper_runs} SweeperFn runs)",
            f"  status samples       {self.samples} DynamoDB scans, {self.ledger_samples} ledger"
            f" reads, {self.transitions_seen} transitions seen",
            f"  NFS-e at provider    {self.simulator_issued}",
            f"  lost                 {self.lost}",
            f"  duplicated           {self.duplicated}",
            f"  mismatches           {self.mismatches} (DynamoDB vs ledger)",
            f"  RPS reused           {self.rps_reused}",
            f"  backward moves       {self.backward_moves}",
            f"  wall time            {self.wall_seconds:.1f}s (POSTs {self.post_seconds:.1f}s;"
            f" stack start {self.startup_seconds:.1f}s not counted)",
            f"  throughput           {self.throughput:.1f} invoices/s to a final status",
        ]
        if self.violations:
            lines.append(f"INVARIANTS BROKEN ({len(self.violations)}):")
            lines.extend(f"  - {v}" for v in self.violations[:50])
            if len(self.violations) > 50:
                lines.append(f"  ... and {len(self.violations) - 50} more")
        else:
            lines.append("all invariants hold")
        return lines


# ----------------------------------------------------------------------------- helpers ---


@contextlib.contextmanager
def scratch_ledger(use_postgres: bool) -> Iterator[str]:
    """A fresh PostgreSQL database for the run's ledger (dropped after); "" means SQLite.

    Fresh, because the RPS counters start at 1 with every stack and the ledger refuses a
    second invoice with an RPS it already holds.
    """
    if not use_postgres:
        yield ""
        return
    # The run's scratch database lives on the suite's server: the configured one (LEDGER_TEST_PG,
    # DATABASE_URL, 127.0.0.1:5432), else an embedded one for this run (nfse_local/pg.py); SQLite
    # only when neither can be had.
    try:
        import psycopg
        from psycopg import sql as pgsql

        from nfse_local import pg

        pg_admin = pg.admin_conninfo()
        admin = psycopg.connect(pg_admin, autocommit=True)
    except Exception as exc:
        log.warning("PostgreSQL unavailable (%s); the ledger is SQLite", exc)
        yield ""
        return
    name = f"chaos_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(pg_admin)
    url = (
        f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}"
        f":{params.get('port', 5432)}/{name}"
    )
    try:
        yield url
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


def _companies() -> list[tuple[str, str]]:
    return [(tenant.tenant_id, cnpj) for tenant in TENANTS for cnpj in tenant.cnpjs]


def _scan(ddb: Any, table: str, *, statuses_only: bool = False) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    if statuses_only:
        kwargs |= {
            "ProjectionExpression": "invoiceId, #s",
            "ExpressionAttributeNames": {"#s": "status"},
        }
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _queue_depth(sqs: Any, url: str, *, visible_only: bool = False) -> int:
    names = ["ApproximateNumberOfMessages"]
    if not visible_only:
        names += ["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


class StatusSampler(threading.Thread):
    """Samples every invoice's status in DynamoDB (consistent scans) and in the ledger, over
    and over, keeping each observed sequence of distinct statuses."""

    def __init__(self, stack: LocalStack, interval: float) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        from nfse_core.store.sql_executors import SqlAlchemyExecutor

        self._ddb = stack.client("dynamodb")
        self._table = stack.resources.invoices_table
        self._executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
        self._interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.dynamodb: dict[str, list[str]] = {}
        self.ledger: dict[str, list[str]] = {}
        self.final_count = 0
        self.scans = 0
        self.ledger_reads = 0
        self.errors = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)
        self._executor.engine.dispose()

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            self.sample_once()
            # A scan costs more as the table grows: it keeps to a quarter of the time at most.
            self._halt.wait(max(self._interval, 3 * (time.monotonic() - began)))

    def sample_once(self) -> None:
        try:
            items = _scan(self._ddb, self._table, statuses_only=True)
            rows = self._executor.execute(_SELECT_LEDGER, {})
        except Exception:
            self.errors += 1
            return
        with self._lock:
            finals = 0
            for item in items:
                status = item["status"]["S"]
                finals += InvoiceStatus(status) in FINAL
                _observe(self.dynamodb, item["invoiceId"]["S"], status)
            for row in rows:
                _observe(self.ledger, str(row["invoice_id"]), str(row["status"]))
            self.final_count = finals
            self.scans += 1
            self.ledger_reads += 1

    def pending(self, ids: set[str]) -> list[str]:
        """Those of `ids` not settled yet: their latest sampled DynamoDB status is not final,
        or the ledger does not show it yet (a worker killed between its final write and the
        ledger leaves the row to SweeperFn, which the run waits for, as production would)."""
        with self._lock:
            return [
                i
                for i in ids
                if not _is_final(self.dynamodb.get(i))
                or (self.ledger.get(i) or [""])[-1] != self.dynamodb[i][-1]
            ]


def _is_final(seen: list[str] | None) -> bool:
    return bool(seen) and InvoiceStatus(seen[-1] if seen else "EMITTED") in FINAL


def _observe(history: dict[str, list[str]], invoice_id: str, status: str) -> None:
    seen = history.setdefault(invoice_id, [])
    if not seen or seen[-1] != status:
        seen.append(status)


def backward_moves(history: dict[str, list[str]]) -> list[str]:
    """Every observed sequence that is not monotonic by RANK, or leaves a final status."""
    problems = []
    for invoice_id, seen in history.items():
        statuses = [InvoiceStatus(s) for s in seen]
        for before, after in itertools.pairwise(statuses):
            # Same rank but different status (ISSUED <-> FAILED) is a move too: never allowed.
            leaves_final = before in FINAL and after is not InvoiceStatus.CANCELLED
            if RANK[after] < RANK[before] or leaves_final:
                problems.append(f"{invoice_id}: {' -> '.join(seen)}")
                break
    return problems


class Monkey(threading.Thread):
    """Kills the worker (SIGKILL) when the settled share of invoices crosses random marks,
    a random moment later; also switches the simulator's HTTP error among 500/502/503/504."""

    def __init__(
        self,
        stack: LocalStack,
        sampler: StatusSampler,
        expected: Callable[[], int],
        kills: int,
        rng: random.Random,
    ) -> None:
        super().__init__(name="chaos-monkey", daemon=True)
        self._stack = stack
        self._sampler = sampler
        self._expected = expected
        self._rng = rng
        self._marks = sorted(rng.uniform(0.05, 0.85) for _ in range(kills))
        self._quiet = threading.Event()  # faults off: no more error switching
        self._switching = threading.Lock()
        self._halt = threading.Event()
        self.kills = 0
        self.pids: list[int] = []

    @property
    def done(self) -> bool:
        return self.kills >= len(self._marks)

    def quiet(self) -> None:
        """No more switching; returns once a switch in progress cannot undo what follows."""
        self._quiet.set()
        with self._switching:
            pass

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._switching:
                if not self._quiet.is_set():
                    status = self._rng.choice(ERROR_STATUSES)
                    self._stack.simulator.set_faults(error_status=status)
            if not self.done:
                expected = max(1, self._expected())
                if self._sampler.final_count >= self._marks[self.kills] * expected:
                    self._halt.wait(self._rng.uniform(0.0, 0.4))  # mid-flight, not at a boundary
                    which = self._rng.randrange(self._stack.workers)
                    self.pids.append(self._stack.restart_worker(which=which))
                    self.kills += 1
            self._halt.wait(0.1)


# -------------------------------------------------------------------------------- run ---


class _Poster:
    """POST /invoices as an ERP would: a unique Idempotency-Key per invoice, and the same key
    again after a connection error, a 5xx or a 409 (in progress) - for as long as a dead
    EmitFn's in-progress record may last (its Timeout). Some clients give up instead after an
    answer that never came (`give_up_rate`)."""

    # Retries spread over about 90 s: longer than EmitFn's Timeout (the in-progress record of
    # a dead invocation lasts that long, answering 409 meanwhile).
    DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0)

    def __init__(self, stack: LocalStack, seed: int, give_up_rate: float) -> None:
        self._stack = stack
        self._seed = seed
        self._give_up_rate = give_up_rate
        self._local = threading.local()
        self._companies = _companies()
        self.unavailable = 0
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def __call__(self, index: int) -> Posted | Abandoned:
        rng = random.Random(self._seed * 1_000_003 + index)  # noqa: S311 - test data
        tenant, cnpj = self._companies[index % len(self._companies)]
        total = Decimal(rng.randint(100, 5_000_000)) / 100
        body = invoice_body(
            cnpj, total=f"{total:.2f}", discriminacao=f"Servicos de TI - lote caos {index}"
        )
        key = str(uuid.UUID(int=rng.getrandbits(128)))
        headers = {
            "x-api-key": self._stack.tenant_api_keys.get(tenant, self._stack.api_key),
            "Authorization": f"Bearer {self._stack.tenant(tenant).token}",
            "Idempotency-Key": key,
        }
        code = 0
        for attempt in range(len(self.DELAYS) + 1):
            if attempt:
                time.sleep(self.DELAYS[attempt - 1])
            try:
                answer = self._session().post(
                    f"{self._stack.api_url}/invoices", json=body, headers=headers, timeout=60
                )
            except requests.RequestException:
                code = 0
            else:
                code = answer.status_code
            if code == 201:
                invoice_id = str(answer.json()["invoiceId"])
                return Posted(index, tenant, cnpj, total, invoice_id, code, attempt + 1)
            if code == 503:
                with self._lock:
                    self.unavailable += 1
            if code in (0, 502) and rng.random() < self._give_up_rate:
                # No answer (the function died): this client never asks again.
                return Abandoned(index, tenant, key)
            if code not in (0, 409) and code < 500:
                break
        return Posted(index, tenant, cnpj, total, None, code, len(self.DELAYS) + 1)


def _reprocess_dlq(stack: LocalStack) -> dict[str, int]:
    """ProcessorFn, invoked in its own process as its schedule (or an operator) would."""
    response = stack.invoke("ProcessorFn", {"maxMessages": 100})
    return {k: int(v) for k, v in response.items()}


def _sweep(stack: LocalStack) -> dict[str, int]:
    """SweeperFn, as its schedule would."""
    response = stack.invoke("SweeperFn", {})
    return {k: int(v) for k, v in response.items()}


def run(config: ChaosConfig, echo: Callable[[str], None] | None = None) -> ChaosReport:
    say = echo or (lambda line: print(line, flush=True))
    state_dir = (config.state_dir or ROOT / ".local" / "chaos").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    worker_log = state_dir / "worker.log"
    worker_log.unlink(missing_ok=True)
    report = ChaosReport(config)
    # Fault injection in EmitFn's process (nfse_local.runtime), outside the product code.
    emit_faults = {
        "die_before": {
            "PutObject": config.emit_die_before_xml,
            "StartExecution": config.emit_die_before_start,
        },
        "lose_after": {"StartExecution": config.emit_lose_start_answer},
        "seed": config.seed,
    }
    with (
        scratch_ledger(config.use_postgres) as database_url,
        LocalStack(
            StackOptions(
                state_dir=state_dir,
                write_session=False,
                simulator=True,
                database_url=database_url or None,
            ),
            worker=WorkerOptions(start=True, log=worker_log, count=config.workers),
            deployment=DeploymentOptions(
                parameters={
                    "MaxReceiveCount": str(config.max_receive_count),
                    "WorkerConcurrency": str(config.worker_concurrency),
                    "SweepRedriveAfterSeconds": str(config.sweep_redrive_after),
                    "SweepLiveWindowSeconds": str(config.sweep_live_window),
                },
                function_env={"EmitFn": {FAULTS_ENV: json.dumps(emit_faults)}},
            ),
            echo=lambda line: None,
        ) as stack,
    ):
        report.ledger = "PostgreSQL" if database_url else "SQLite"
        _quiet_resets(stack)
        report.startup_seconds = stack.startup_seconds
        accepted, abandoned = _drive(stack, config, report, say)
        report.emit_deaths = stack.functions["EmitFn"].restarts
        _verify(stack, report, accepted, abandoned)
    return report


def _quiet_resets(stack: LocalStack) -> None:
    """A killed worker resets its connections to the simulator mid-request: expected here,
    so the simulator's server does not print a traceback for each."""
    server = getattr(stack.simulator, "_server", None)
    if server is not None:
        server.handle_error = lambda request, client_address: None


def _drive(
    stack: LocalStack, config: ChaosConfig, report: ChaosReport, say: Callable[[str], None]
) -> tuple[list[Posted], list[Abandoned]]:
    """POST everything under faults and kills, then settle; the accepted invoices, and the
    requests whose clients gave up."""
    rng = random.Random(config.seed)  # noqa: S311 - fault schedule, not security
    stack.simulator.set_faults(
        latency=config.latency,
        error_rate=config.error_rate,
        soap_fault_rate=config.soap_fault_rate,
        soap_fault_200_rate=config.soap_fault_200_rate,
        timeout_rate=config.timeout_rate,
        timeout_seconds=config.timeout_seconds,
        lost_rate=config.lost_rate,
        issued_then_timeout_rate=config.issued_then_timeout_rate,
        drip_rate=config.drip_rate,
        consult_lag_seconds=config.consult_lag_seconds,
        consult_internal_error_rate=config.consult_internal_error_rate,
        seed=config.seed,
    )
    # Early numbers, so their invoices have the time to exhaust their redeliveries.
    numbers = range(1, max(2, config.invoices // 12))
    forced = set(rng.sample(numbers, min(config.dlq_numbers, len(numbers))))
    for numero in forced:
        stack.simulator.force(numero, Forced.TEMPORARY)
    accepted: list[Posted] = []
    abandoned: list[Abandoned] = []
    posting = threading.Event()
    posting.set()
    sampler = StatusSampler(stack, config.sample_interval)
    monkey = Monkey(
        stack,
        sampler,
        lambda: config.invoices if posting.is_set() else len(accepted),
        config.kills,
        rng,
    )
    say(
        f"chaos: {config.invoices} invoices over HTTP ({stack.api_url}), {config.kills} worker"
        f" kills, seed {config.seed}; worker log {stack.worker_log}"
    )
    began = time.monotonic()
    sampler.start()
    monkey.start()
    try:
        posted, gave_up = _post_all(
            stack, config, report, sampler=sampler, monkey=monkey, began=began, say=say
        )
        accepted.extend(posted)
        abandoned.extend(gave_up)
        posting.clear()
        deadline = time.monotonic() + config.settle_timeout
        # Faults stay on until every planned kill has happened (or the time is up).
        while not monkey.done and time.monotonic() < deadline:
            time.sleep(0.2)
        _await_dlq(stack, forced, min(deadline, time.monotonic() + 180))
        monkey.quiet()
        stack.simulator.set_faults(
            latency=0.0,
            error_rate=0.0,
            soap_fault_rate=0.0,
            soap_fault_200_rate=0.0,
            timeout_rate=0.0,
            lost_rate=0.0,
            issued_then_timeout_rate=0.0,
            drip_rate=0.0,
            consult_internal_error_rate=0.0,
            forced={},
        )
        say(f"  [{time.monotonic() - began:6.1f}s] faults off; settling (DLQ via ProcessorFn)")
        _settle(
            stack,
            report,
            sampler=sampler,
            ids={str(p.invoice_id) for p in accepted}
            | {keyed_invoice_id(a.tenant, a.key) for a in abandoned},
            deadline=deadline,
            began=began,
            say=say,
        )
        report.wall_seconds = time.monotonic() - began
    finally:
        monkey.stop()
        sampler.stop()
    sampler.sample_once()
    report.kills = monkey.kills
    _check_samples(report, sampler)
    if any(p.poll() is not None for p in stack.worker_processes):
        report.violation("a worker died on its own")
    return accepted, abandoned


def _await_dlq(stack: LocalStack, forced: set[int], deadline: float) -> None:
    """Faults stay on until the invoices with a refused RPS number have reached the DLQ."""
    items = _scan(stack.client("dynamodb"), stack.resources.invoices_table)
    doomed = sum(int(item["rps"]["M"]["numero"]["N"]) in forced for item in items)
    sqs = stack.client("sqs")
    while time.monotonic() < deadline and _queue_depth(sqs, stack.resources.dlq_url) < doomed:
        time.sleep(0.5)


def _post_all(
    stack: LocalStack,
    config: ChaosConfig,
    report: ChaosReport,
    *,
    sampler: StatusSampler,
    monkey: Monkey,
    began: float,
    say: Callable[[str], None],
) -> tuple[list[Posted], list[Abandoned]]:
    results: list[Posted] = []
    abandoned: list[Abandoned] = []
    poster = _Poster(stack, config.seed, config.give_up_rate)
    with ThreadPoolExecutor(config.post_threads, thread_name_prefix="post") as pool:
        for posted in pool.map(poster, range(config.invoices)):
            if isinstance(posted, Abandoned):
                abandoned.append(posted)
                continue
            results.append(posted)
            if len(results) % max(1, config.invoices // 10) == 0:
                say(
                    f"  [{time.monotonic() - began:6.1f}s] posted {len(results)}, settled"
                    f" {sampler.final_count}, kills {monkey.kills}"
                )
    accepted = [p for p in results if p.invoice_id is not None]
    report.post_seconds = time.monotonic() - began
    report.posted = len(results) + len(abandoned)
    report.abandoned = len(abandoned)
    report.emit_unavailable = poster.unavailable
    report.accepted = len(accepted)
    report.refused = len(results) - len(accepted)
    report.post_retries = sum(p.tries - 1 for p in results)
    for posted in results:
        if posted.invoice_id is None:
            report.violation(f"POST #{posted.index} never accepted (last {posted.status_code})")
    return accepted, abandoned


def _settle(
    stack: LocalStack,
    report: ChaosReport,
    *,
    sampler: StatusSampler,
    ids: set[str],
    deadline: float,
    began: float,
    say: Callable[[str], None],
) -> None:
    """Until every invoice is final and in the ledger: ProcessorFn whenever the DLQ holds
    messages, SweeperFn every half minute (as their schedules would, sooner). An invoice whose
    client gave up before it was recorded never appears: it is not pending."""
    sqs = stack.client("sqs")
    dlq: Counter[str] = Counter()
    swept: Counter[str] = Counter()
    last_line = ""
    next_sweep = time.monotonic()
    while time.monotonic() < deadline:
        sampler.sample_once()
        pending = [i for i in sampler.pending(ids) if i in sampler.dynamodb]
        if not pending:
            break
        if _queue_depth(sqs, stack.resources.dlq_url, visible_only=True):
            dlq.update(_reprocess_dlq(stack))
            report.dlq_runs += 1
        if time.monotonic() >= next_sweep:
            swept.update(_sweep(stack))
            report.sweeper_runs += 1
            next_sweep = time.monotonic() + 30
        line = f"{len(pending)} pending, DLQ {dict(dlq)}, swept {dict(swept)}"
        if line != last_line:
            say(f"  [{time.monotonic() - began:6.1f}s] {line}")
            last_line = line
        time.sleep(1.0)
    report.dlq = dict(dlq)
    report.sweeps = {k: v for k, v in swept.items() if k != "stoppedEarly"}


def _check_samples(report: ChaosReport, sampler: StatusSampler) -> None:
    report.samples = sampler.scans
    report.ledger_samples = sampler.ledger_reads
    report.transitions_seen = sum(len(s) - 1 for s in sampler.dynamodb.values())
    moves = backward_moves(sampler.dynamodb) + [
        f"ledger {p}" for p in backward_moves(sampler.ledger)
    ]
    report.backward_moves = len(moves)
    for move in moves:
        report.violation(f"status moved backwards: {move}")


def _verify(
    stack: LocalStack, report: ChaosReport, accepted: list[Posted], abandoned: list[Abandoned]
) -> None:
    """Compare what the client was told, DynamoDB, the ledger and the provider."""
    from nfse_core.store.sql_executors import SqlAlchemyExecutor

    records = {
        record.invoice_id: record
        for record in (
            from_item(item)
            for item in _scan(stack.client("dynamodb"), stack.resources.invoices_table)
        )
    }
    executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
    try:
        ledger = {str(r["invoice_id"]): r for r in executor.execute(_SELECT_LEDGER, {})}
    finally:
        executor.engine.dispose()
    _check_accepted(report, accepted, abandoned, records)
    _check_provider(stack, report, records)
    _check_rps(report, records)
    _check_ledger(report, records, ledger)


def _check_accepted(
    report: ChaosReport,
    accepted: list[Posted],
    abandoned: list[Abandoned],
    records: dict[str, InvoiceRecord],
) -> None:
    """Lost: accepted but missing, or never final. Unknown: stored, but no client was told
    (except under the key of a client that gave up, which must be final too)."""
    failed_codes: Counter[str] = Counter()
    for posted in accepted:
        record = records.get(str(posted.invoice_id))
        if record is None:
            report.lost += 1
            report.violation(f"{posted.invoice_id}: accepted (201) but not in DynamoDB")
            continue
        if record.status not in FINAL:
            report.lost += 1
            report.stuck.append(record.invoice_id)
            report.violation(f"{record.invoice_id}: stuck in {record.status}")
        if (record.tenant, record.cnpj, record.total) != (posted.tenant, posted.cnpj, posted.total):
            report.violation(f"{record.invoice_id}: stored tenant/cnpj/total differ from the POST")
        report.issued += record.status is InvoiceStatus.ISSUED
        if record.status is InvoiceStatus.FAILED:
            report.failed += 1
            failed_codes[record.error.code if record.error else "?"] += 1
    report.accepted_failed_codes = dict(failed_codes)
    given_up = {keyed_invoice_id(a.tenant, a.key) for a in abandoned}
    for invoice_id in given_up & set(records):
        record = records[invoice_id]
        report.abandoned_found += 1
        report.issued += record.status is InvoiceStatus.ISSUED
        if record.status is InvoiceStatus.FAILED:
            report.failed += 1
            failed_codes[record.error.code if record.error else "?"] += 1
        if record.status not in FINAL:
            report.stuck.append(invoice_id)
            report.violation(f"{invoice_id}: its client gave up and it is stuck in {record.status}")
    report.failed_codes = dict(failed_codes)
    known = {str(p.invoice_id) for p in accepted} | given_up
    for invoice_id in set(records) - known:
        report.violation(f"{invoice_id}: in DynamoDB, but no client was given it")


def _check_provider(
    stack: LocalStack, report: ChaosReport, records: dict[str, InvoiceRecord]
) -> None:
    """One NFS-e per ISSUED invoice (the one it records), none for any other invoice."""
    stats = stack.simulator.stats()
    report.faults = dict(stats["faults_injected"])
    report.requests_by_operation = dict(stats["requests_by_operation"])
    report.simulator_issued = int(stats["issued"])
    for key, count in stats["issuances_per_rps"].items():
        if count != 1:
            report.duplicated += count - 1
            report.violation(f"RPS {key}: the provider issued {count} NFS-e")
    nfse_numbers: Counter[str] = Counter()
    for record in records.values():
        stored = stack.simulator.issued(
            record.cnpj, record.rps.numero, record.rps.serie, record.rps.tipo
        )
        if record.status is InvoiceStatus.ISSUED:
            nfse_numbers[str(record.nfse_number)] += 1
            if stored is None:
                report.violation(f"{record.invoice_id}: ISSUED, but the provider has no NFS-e")
            elif str(stored.numero) != record.nfse_number:
                report.duplicated += 1
                report.violation(
                    f"{record.invoice_id}: records NFS-e {record.nfse_number}, the provider"
                    f" issued {stored.numero} for its RPS"
                )
        elif stored is not None:
            report.duplicated += 1
            report.violation(
                f"{record.invoice_id}: {record.status}, but the provider issued NFS-e"
                f" {stored.numero} for its RPS"
            )
    for number, count in nfse_numbers.items():
        if count > 1:
            report.violation(f"NFS-e {number} is recorded by {count} invoices")
    issued_here = sum(r.status is InvoiceStatus.ISSUED for r in records.values())
    if report.simulator_issued != issued_here:
        report.violation(
            f"the provider issued {report.simulator_issued} NFS-e for {issued_here} ISSUED invoices"
        )


def _check_rps(report: ChaosReport, records: dict[str, InvoiceRecord]) -> None:
    """One invoice per (cnpj, serie, tipo, numero)."""
    rps = Counter((r.cnpj, r.rps.serie, r.rps.tipo, r.rps.numero) for r in records.values())
    for key, count in rps.items():
        if count > 1:
            report.rps_reused += count - 1
            report.violation(f"RPS {key} used by {count} invoices")


def _check_ledger(
    report: ChaosReport, records: dict[str, InvoiceRecord], ledger: dict[str, Any]
) -> None:
    """DynamoDB and the ledger agree for every final invoice, row by row."""
    for record in records.values():
        if record.status not in FINAL:
            continue
        row = ledger.get(record.invoice_id)
        problem = ""
        if row is None:
            problem = "no ledger row"
        elif str(row["status"]) != record.status.value:
            problem = f"ledger {row['status']} vs DynamoDB {record.status}"
        elif (row["nfse_number"] or None) != record.nfse_number:
            problem = f"NFS-e: ledger {row['nfse_number']} vs DynamoDB {record.nfse_number}"
        elif Decimal(str(row["total"])).quantize(Decimal("0.01")) != record.total:
            problem = f"total: ledger {row['total']} vs DynamoDB {record.total}"
        if problem:
            report.mismatches += 1
            report.violation(f"{record.invoice_id}: {problem}")
    for invoice_id in set(ledger) - set(records):
        report.mismatches += 1
        report.violation(f"{invoice_id}: in the ledger, not in DynamoDB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfse_local.chaos", description=__doc__)
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--post-threads", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker tasks at once")
    parser.add_argument("--sqlite", action="store_true", help="ledger in SQLite, not PostgreSQL")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        invoices=args.invoices,
        kills=args.kills,
        seed=args.seed,
        post_threads=args.post_threads,
        worker_concurrency=args.worker_concurrency,
        workers=args.workers,
        use_postgres=not args.sqlite,
        state_dir=args.state_dir,
    )
    logging.basicConfig(level=logging.WARNING)
    report = run(config)
    for line in report.lines():
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
