"""Section 3: adapter worker throughput against the provider simulator at a fixed latency.

For each concurrency (1, 8, 32) the real worker process (`python -m adapters_service`, the
container's entrypoint) drains a queue pre-loaded the real way: EmitService writes the
DynamoDB item and the S3 xml/ document (RPS counter, XSD and all), and the contract message
body goes to the requests queue directly, so the emit side is not measured. The resources are
template.yaml's, in a moto server (a LocalStack that starts no worker); the simulator answers every
SOAP call after a fixed 100 ms.

The clock starts at the first GerarNfse the simulator sees (worker start-up is measured
separately, from spawn to that call) and stops at the last invoice's `processedAt` (the
worker's own clock at the conditional ISSUED write), read back from the ledger: no polling
granularity in the figure. Peak memory is the worker's VmHWM, read from /proc before it stops.
CPU per invoice is /proc/<pid>/stat utime+stime for the worker and os.times() for this
process (moto + simulator), both over the timed window.

A last run at the highest concurrency is profiled: the worker as
`python -m cProfile -o OUT -m adapters_service` (nothing in the product code; on Python 3.12
cProfile records every thread) and this process (moto and the simulator) under one cProfile;
every pass also splits this process's CPU by the server that owns each request thread.

    python -m bench.worker            # the section alone, full counts
    python -m bench.worker --quick
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import ROOT, Context, Row, Section, text_table
from bench.cost import Sizing
from bench.profiling import (
    ThreadCpu,
    epoch_seconds,
    load_profile,
    own_cpu_seconds,
    peak_memory_mb,
    process_cpu_seconds,
    profile_note,
    server_group,
)
from nfse_core.domain.ids import new_invoice_id
from nfse_core.domain.invoice import utc_now
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.registry import ProviderRegistry
from nfse_core.services.emit import EmitService
from nfse_core.store.control import RpsCounter, TenantDirectory
from nfse_core.store.documents import DocumentStore
from nfse_core.store.invoices import InvoiceRepository
from nfse_core.store.sql_executors import sqlite_schema_path
from nfse_local.runtime import base_process_env
from nfse_local.samples import invoice_body

LATENCY_SECONDS = 0.1
TARGET_RATIO = 0.7
TARGET_RSS_MB = 300.0
# (concurrency, invoices): full run, quick run
POINTS_FULL: tuple[tuple[int, int], ...] = ((1, 20), (8, 96), (32, 192))
POINTS_QUICK: tuple[tuple[int, int], ...] = ((1, 3), (8, 8), (32, 12))
PROFILE_INVOICES = (64, 8)


# ---------------------------------------------------------------------- the harness ----
@dataclass(slots=True)
class Point:
    concurrency: int
    invoices: int
    seconds: float
    startup_seconds: float
    peak_rss_mb: float
    worker_cpu_per_invoice: float
    host_cpu_per_invoice: float
    issued: int
    duplicates: int
    host_cpu_by_server: dict[str, float] = field(default_factory=dict)  # seconds per invoice
    worker_profile: Path | None = None
    host_profile: Path | None = None

    @property
    def rate(self) -> float:
        return self.invoices / self.seconds

    @property
    def ideal(self) -> float:
        return self.concurrency / LATENCY_SECONDS

    @property
    def ratio(self) -> float:
        return self.rate / self.ideal


class _Collect:
    """An Orchestrator that keeps the state machine input (= the SQS body) instead of starting."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self._lock = threading.Lock()

    def start(self, invoice_id: str, payload: dict[str, Any], *, name: str) -> str:
        del name  # the execution's name: nothing is started here
        with self._lock:
            self.bodies.append(json.dumps(payload))
        return f"collected:{invoice_id}"


@dataclass
class Harness:
    """One LocalStack without a worker; spawns workers and pre-loads queues against it."""

    stack: Any  # nfse_local.stack.LocalStack
    state_dir: Path
    worker_env: dict[str, str] = field(default_factory=dict)
    _first_gerar: list[float] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def running(cls, **stack_options: Any) -> Iterator[Harness]:
        """`stack_options`: StackOptions fields over the harness's own."""
        from nfse_local.stack import (  # noqa: PLC0415 - heavy (moto); only this section needs it
            LocalStack,
            StackOptions,
            WorkerOptions,
        )

        with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
            state_dir = Path(tmp)
            options: dict[str, Any] = {
                "state_dir": state_dir,
                "write_session": False,
                "simulator": True,
                "database_url": f"sqlite:///{state_dir / 'ledger.db'}",
                "prefix": "bench-worker",  # moto's backends are per process: own names
            }
            options.update(stack_options)
            with LocalStack(
                StackOptions(**options),
                worker=WorkerOptions(start=False),
                echo=lambda _line: None,
            ) as stack:
                harness = cls(stack, state_dir)
                harness._prepare()
                yield harness

    def _prepare(self) -> None:
        stack = self.stack
        # What LocalStack gives its own worker (its role, the certificates in Secrets
        # Manager, the template's settings), with a 1 s long poll: the bench starts and stops
        # a worker per point, and a stop waits for the poll in progress.
        self.worker_env = stack.worker_environment({"WORKER_WAIT_SECONDS": "1"})
        stack.simulator.set_faults(latency=LATENCY_SECONDS)
        # The first GerarNfse starts the clock: noted where the simulator counts requests,
        # so nothing polls it.
        state = stack.simulator.state
        counted = state.count_request
        first = self._first_gerar

        def count_request(operation: str) -> None:
            if operation == "GerarNfse" and not first:
                first.append(time.time())
            counted(operation)

        setattr(state, "count_request", count_request)  # noqa: B010 - a bench-side tap

    # -- pre-loading, the real way ---------------------------------------------------------
    def preload(self, count: int, threads: int = 4) -> tuple[list[str], list[str]]:
        """`count` invoices through EmitService (DynamoDB item, RPS counter, S3 xml/), both
        tenants in turn. Returns their ids and contract bodies (for `enqueue`)."""
        stack, resources = self.stack, self.stack.resources
        ddb, s3 = stack.client("dynamodb"), stack.client("s3")
        collect = _Collect()
        service = EmitService(
            invoices=InvoiceRepository(ddb, resources.invoices_table),
            counter=RpsCounter(ddb, resources.rps_counters_table),
            tenants=TenantDirectory(ddb, resources.tenants_table),
            # As the local stack's EmitFn: the simulators answer for every municipality.
            standards=ProviderRegistry.default(endpoint_override=stack.provider_overrides),
            documents=DocumentStore(s3, resources.docs_bucket, resources.kms_key_id),
            orchestrator=collect,
            clock=utc_now,
            new_id=new_invoice_id,
            serie="1",
        )
        tenants = stack.tenants

        def emit(i: int) -> str:
            tenant = tenants[i % len(tenants)]
            body = invoice_body(tenant.cnpjs[0], total=f"{100 + i}.00")
            return service.emit(tenant.tenant_id, parse_invoice_request(body)).invoice_id

        with ThreadPoolExecutor(threads) as pool:
            ids = list(pool.map(emit, range(count)))
        return ids, collect.bodies

    def enqueue(self, bodies: Sequence[str]) -> None:
        sqs, url = self.stack.client("sqs"), self.stack.resources.requests_queue_url
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(chunk)],
            )

    # -- a worker process ------------------------------------------------------------------
    def spawn_worker(
        self, concurrency: int, profile_to: Path | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "nfse_local.child", "adapters_service"]
        if profile_to is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile_to), *argv[1:]]
        env = {**base_process_env(), **self.worker_env, "WORKER_CONCURRENCY": str(concurrency)}
        log = (self.state_dir / f"worker-c{concurrency}.log").open("ab")
        try:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()

    def issued_count(self) -> int:
        with contextlib.closing(self._ledger()) as db:
            return int(
                db.execute("SELECT count(*) FROM invoices WHERE status='ISSUED'").fetchone()[0]
            )

    def processed_times(self, ids: Sequence[str]) -> dict[str, float]:
        """invoiceId -> processedAt (epoch seconds) from the ledger, for ISSUED invoices."""
        wanted = set(ids)
        with contextlib.closing(self._ledger()) as db:
            rows = db.execute(
                "SELECT invoice_id, processed_at FROM invoices WHERE status='ISSUED'"
            ).fetchall()
        return {i: epoch_seconds(p) for i, p in rows if i in wanted and p}

    def _ledger(self) -> sqlite3.Connection:
        database = self.stack.ledger_url.removeprefix("sqlite:///")
        return sqlite3.connect(sqlite_schema_path(database), timeout=30)

    def statuses(self, ids: Sequence[str]) -> dict[str, int]:
        """One paginated Scan at the end: how many of `ids` are in each status."""
        wanted, counts = set(ids), defaultdict[str, int](int)
        pages = (
            self.stack.client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=self.stack.resources.invoices_table,
                ProjectionExpression="invoiceId, #s",
                ExpressionAttributeNames={"#s": "status"},
            )
        )
        for page in pages:
            for item in page["Items"]:
                if item["invoiceId"]["S"] in wanted:
                    counts[item["status"]["S"]] += 1
        return dict(counts)

    def run_point(
        self, concurrency: int, count: int, *, profile: bool = False, timeout: float = 300.0
    ) -> Point:
        """Emit `count` invoices, start a worker, wait until it polls (start-up done), queue
        them, and time from its first GerarNfse to the last ISSUED."""
        ids, bodies = self.preload(count)
        before = self.stack.simulator.stats()
        self._first_gerar.clear()
        heartbeat = Path(self.worker_env["WORKER_HEARTBEAT_FILE"])
        heartbeat.unlink(missing_ok=True)
        worker_prof = self.state_dir / f"worker-c{concurrency}.prof" if profile else None
        host_prof = self.state_dir / f"host-c{concurrency}.prof" if profile else None
        threads = ThreadCpu(server_group)
        host_profiler = cProfile.Profile() if profile else None
        deadline = time.monotonic() + timeout
        spawned = time.monotonic()
        process = self.spawn_worker(concurrency, worker_prof)
        try:
            while not heartbeat.exists():  # touched before every poll: start-up is over
                _check(process, deadline, "the first poll")
                time.sleep(0.01)
            startup = time.monotonic() - spawned
            with threads.installed():
                if host_profiler is not None:
                    host_profiler.enable()
                worker_cpu0, host_cpu0 = process_cpu_seconds(process.pid), own_cpu_seconds()
                self.enqueue(bodies)
                while self.issued_count() < self._issued_before + count:
                    _check(process, deadline, f"{count} invoices ISSUED")
                    time.sleep(0.2)
                worker_cpu = process_cpu_seconds(process.pid) - worker_cpu0
                host_cpu = own_cpu_seconds() - host_cpu0
                host_by_server = threads.cpu
                if host_profiler is not None:
                    host_profiler.disable()
            peak_rss_mb = peak_memory_mb(process.pid)
        finally:
            _stop(process)
        if host_profiler is not None:
            host_profiler.dump_stats(str(host_prof))
        self._issued_before += count
        times = self.processed_times(ids)
        statuses = self.statuses(ids)
        if len(times) != count or statuses.get("ISSUED") != count:
            raise RuntimeError(f"not every invoice was ISSUED: {statuses}")
        after = self.stack.simulator.stats()
        return Point(
            concurrency=concurrency,
            invoices=count,
            seconds=max(times.values()) - self._first_gerar[0],
            startup_seconds=startup,
            peak_rss_mb=peak_rss_mb,
            worker_cpu_per_invoice=worker_cpu / count,
            host_cpu_per_invoice=host_cpu / count,
            issued=after["issued"] - before["issued"],
            duplicates=after["duplicates_refused"] - before["duplicates_refused"],
            host_cpu_by_server={k: v / count for k, v in host_by_server.items()},
            worker_profile=worker_prof,
            host_profile=host_prof,
        )

    _issued_before: int = 0


def _check(process: subprocess.Popen[bytes], deadline: float, what: str) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"the worker exited ({process.returncode}) before {what}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"no {what} in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------- section ----
def rows(ctx: Context) -> list[Row]:
    points_spec = POINTS_QUICK if ctx.quick else POINTS_FULL
    with Harness.running() as harness:
        harness.preload(2)  # warm moto's code paths and the tenants (never queued)
        points = [harness.run_point(c, n) for c, n in points_spec]
        top_c = points_spec[-1][0]
        profiled = harness.run_point(top_c, ctx.iterations(*PROFILE_INVOICES), profile=True)
        # The profiles live in the harness's temporary directory: read them now.
        profile_notes = _profile_notes(profiled)
    best = points[-1]
    ctx.measured["worker_invoices_per_second"] = best.rate
    ctx.measured["worker_cpu_seconds_per_invoice"] = best.worker_cpu_per_invoice
    ctx.measured["worker_peak_rss_mb"] = best.peak_rss_mb
    ctx.measured["worker_concurrency"] = best.concurrency

    out: list[Row] = []
    for point in points:
        note = (
            f"{point.invoices} invoices in {point.seconds:.2f} s; worker CPU"
            f" {point.worker_cpu_per_invoice * 1e3:.1f} ms/invoice, moto+simulator CPU"
            f" {point.host_cpu_per_invoice * 1e3:.1f} ms/invoice;"
            f" start-up {point.startup_seconds:.2f} s; peak RSS {point.peak_rss_mb:.0f} MB"
        )
        target = f">= {TARGET_RATIO:.1f} of ideal" if point.concurrency == top_c else ""
        ok = point.ratio >= TARGET_RATIO if point.concurrency == top_c else None
        out.append(
            Row(
                f"c={point.concurrency}: invoices/s (ideal {point.ideal:.0f})",
                f"{point.rate:.1f} ({point.ratio:.2f} of ideal)",
                target,
                ok,
                note,
            )
        )
    for point in points:
        top = point.concurrency == top_c
        out.append(
            Row(
                f"c={point.concurrency}: worker peak RSS (VmHWM)",
                f"{point.peak_rss_mb:.0f} MB",
                f"< {TARGET_RSS_MB:.0f} MB" if top else "",
                point.peak_rss_mb < TARGET_RSS_MB if top else None,
            )
        )
    total_cpu = best.worker_cpu_per_invoice + best.host_cpu_per_invoice
    cores = os.cpu_count() or 1
    out.append(
        Row(
            f"CPU ceiling on this machine (c={best.concurrency})",
            f"{cores / total_cpu:.0f} invoices/s",
            note=f"{cores} cores / ({best.worker_cpu_per_invoice * 1e3:.1f} worker +"
            f" {best.host_cpu_per_invoice * 1e3:.1f} moto+simulator ms CPU per invoice)",
        )
    )
    vcpu = Sizing.from_files().worker_vcpu  # the task size template.yaml deploys
    fargate = vcpu / best.worker_cpu_per_invoice
    out.append(
        Row(
            f"worker CPU bound at {vcpu:g} vCPU (Fargate task)",
            f"{fargate:.0f} invoices/s",
            note="the worker's own CPU per invoice only; moto stands in for AWS here",
        )
    )
    ctx.notes["worker"] = _notes(points, profile_notes, total_cpu, cores)
    return out


def _profile_notes(profiled: Point) -> str:
    return "\n".join(
        [
            f"Profiled run (c={profiled.concurrency}, {profiled.invoices} invoices; under the "
            f"profiler {profiled.rate:.1f} invoices/s). Top entries by own time:",
            "",
            profile_note("worker process", load_profile(profiled.worker_profile)),
            profile_note(
                "this process: moto server + simulator", load_profile(profiled.host_profile)
            ),
        ]
    )


def _notes(points: list[Point], profile_notes: str, total_cpu: float, cores: int) -> str:
    best = points[-1]
    split = ", ".join(
        f"{k} {v * 1e3:.1f} ms" for k, v in sorted(best.host_cpu_by_server.items()) if v > 0
    )
    parts = [
        f"Simulator latency {LATENCY_SECONDS * 1e3:.0f} ms per SOAP call, so the ideal is "
        f"concurrency / {LATENCY_SECONDS:g} s. Each point is a fresh worker process; the "
        "invoices are emitted through EmitService beforehand and queued once the worker polls; "
        "the clock runs from the first GerarNfse to the last `processedAt`; CPU is counted "
        "from the queueing to the end. Every invoice reached ISSUED exactly once (simulator "
        f"duplicates refused: {sum(p.duplicates for p in points)}). The machine has {cores} "
        "cores (its load average at the start is under Machine): read the rates to two figures.",
        "",
        f"**What bounds it at c={best.concurrency}.** CPU: the worker spends "
        f"{best.worker_cpu_per_invoice * 1e3:.1f} ms and this process (moto serving every AWS "
        "call, plus the simulator's XSD and signature checks) "
        f"{best.host_cpu_per_invoice * 1e3:.1f} ms of CPU per invoice, so {cores} cores top out "
        f"near {cores / total_cpu:.0f} invoices/s whatever the concurrency; measured "
        f"{best.rate:.1f}. This process's CPU per invoice by the server owning the thread: "
        f"{split}.",
        "",
        profile_notes,
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ctx = Context(quick="--quick" in args)
    result = rows(ctx)
    print(text_table(Section("worker", "3. Worker throughput", rows), result))
    print(ctx.notes.get("worker", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
