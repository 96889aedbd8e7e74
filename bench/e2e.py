"""Section 4: end to end through the embedded stack, over HTTP, as a client's ERP would call it.

A batch of invoices is POSTed to the local gateway by 8 threads, both sample tenants in turn;
the gateway runs the real EmitFn (moto: DynamoDB, S3, Step Functions executing the real ASL,
which queues the message), the worker process takes it from SQS to the simulator (100 ms per
SOAP call, as in section 3) and records ISSUED. Completion is read from the ledger (the worker
writes it after the ISSUED write), not by polling GETs; each invoice's POST -> ISSUED time is
its `processedAt` minus the moment its POST started. At the end every invoice is read once
with GET, as the cost model counts.

What bounds it comes from a tap on the gateway's handlers (time each function spends inside
its per-function lock, i.e. the serialized part), the CPU of this process split by the
server owning each thread, the worker's CPU, and a profiled second batch.

    python -m bench.e2e [--quick]
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from bench.core import Context, Row, Section, text_table
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
from bench.timing import ms
from bench.worker import LATENCY_SECONDS
from nfse_core.store.sql_executors import sqlite_schema_path
from nfse_local.samples import invoice_body

if TYPE_CHECKING:
    from nfse_local.gateway import Gateway

POSTERS = 8
WORKER_CONCURRENCY = 16
BATCH = (1000, 50)
PROFILE_BATCH = (40, 10)


@dataclass(slots=True)
class Posted:
    invoice_id: str
    tenant: str
    started: float  # epoch seconds
    seconds: float  # the POST's own round trip


@dataclass(slots=True)
class HandlerTap:
    """Time each function's invocations as the gateway sees them (each function runs in its
    own process, one event at a time)."""

    busy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, gateway: Gateway) -> None:
        gateway.wrap_functions(lambda name, function: _Timed(self, name, function))

    def record(self, name: str, seconds: float) -> None:
        with self._lock:
            self.busy[name] += seconds
            self.calls[name] += 1

    def reset(self) -> None:
        with self._lock:
            self.busy.clear()
            self.calls.clear()


class _Timed:
    def __init__(self, tap: HandlerTap, name: str, function: Any) -> None:
        self._tap, self._name, self._function = tap, name, function

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any:
        began = time.perf_counter()
        try:
            return self._function.invoke(event, request_id=request_id)
        finally:
            self._tap.record(self._name, time.perf_counter() - began)


@dataclass(slots=True)
class Batch:
    posted: list[Posted]
    issued_at: dict[str, float]
    post_window: float
    busy: dict[str, float]
    calls: dict[str, int]
    host_cpu: float
    worker_cpu: float
    function_cpu: float
    cpu_by_server: dict[str, float]

    @property
    def latencies(self) -> list[float]:
        return sorted(self.issued_at[p.invoice_id] - p.started for p in self.posted)

    @property
    def window(self) -> float:
        return max(self.issued_at.values()) - min(p.started for p in self.posted)

    @property
    def rate(self) -> float:
        return len(self.posted) / self.window


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class E2e:
    def __init__(self, stack: Any, state_dir: Path) -> None:
        self.stack = stack
        self.state_dir = state_dir
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=POSTERS)
        self.http.mount("http://", adapter)
        self.tap = HandlerTap()
        self.tap.install(stack.gateway)
        self._settled = 0

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[E2e]:
        from nfse_local.stack import (  # noqa: PLC0415 - heavy (moto); only this section needs it
            DeploymentOptions,
            LocalStack,
            StackOptions,
            WorkerOptions,
        )

        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            state_dir = Path(tmp)
            with (
                LocalStack(
                    StackOptions(
                        state_dir=state_dir,
                        write_session=False,
                        simulator=True,
                        database_url=f"sqlite:///{state_dir / 'ledger.db'}",
                        prefix="bench-e2e",  # moto's backends are per process: own names
                    ),
                    worker=WorkerOptions(start=True, log=state_dir / "worker.log"),
                    deployment=DeploymentOptions(
                        parameters={"WorkerConcurrency": str(WORKER_CONCURRENCY)}
                    ),
                    echo=lambda _line: None,
                ) as stack,
                _quiet_handlers(),
            ):
                stack.simulator.set_faults(latency=LATENCY_SECONDS)
                yield cls(stack, state_dir)

    def _headers(self, tenant: str) -> dict[str, str]:
        return {
            "x-api-key": self.stack.api_key,
            "Authorization": f"Bearer {self.stack.tenant(tenant).token}",
        }

    def post(self, i: int) -> Posted:
        tenant = self.stack.tenants[i % len(self.stack.tenants)]
        body = invoice_body(tenant.cnpjs[0], total=f"{100 + i % 900}.00")
        headers = self._headers(tenant.tenant_id) | {"Idempotency-Key": str(uuid.uuid4())}
        started, began = time.time(), time.perf_counter()
        answer = self.http.post(
            f"{self.stack.api_url}/invoices", json=body, headers=headers, timeout=60
        )
        seconds = time.perf_counter() - began
        if answer.status_code != 201:
            raise RuntimeError(f"POST answered {answer.status_code}: {answer.text[:300]}")
        return Posted(answer.json()["invoiceId"], tenant.tenant_id, started, seconds)

    def get_status(self, posted: Posted) -> tuple[str, float]:
        began = time.perf_counter()
        answer = self.http.get(
            f"{self.stack.api_url}/invoices/{posted.invoice_id}",
            headers=self._headers(posted.tenant),
            timeout=60,
        )
        answer.raise_for_status()
        return str(answer.json()["status"]), time.perf_counter() - began

    def _ledger(self) -> Any:
        database = self.stack.ledger_url.removeprefix("sqlite:///")
        return contextlib.closing(sqlite3.connect(sqlite_schema_path(database), timeout=30))

    def settled(self) -> int:
        with self._ledger() as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM invoices WHERE status IN ('ISSUED', 'FAILED')"
                ).fetchone()[0]
            )

    def issued_at(self, ids: Sequence[str]) -> dict[str, float]:
        wanted = set(ids)
        with self._ledger() as db:
            rows = db.execute(
                "SELECT invoice_id, status, processed_at FROM invoices WHERE status = 'ISSUED'"
            ).fetchall()
        return {i: epoch_seconds(p) for i, _s, p in rows if i in wanted and p}

    def batch(self, count: int, *, timeout: float = 600.0) -> Batch:
        self.tap.reset()
        worker = self.stack.worker_process
        functions = [self.stack.functions[name].pid for name in ("EmitFn", "GetFn")]
        threads = ThreadCpu(server_group)
        with threads.installed():
            worker_cpu0, host_cpu0 = process_cpu_seconds(worker.pid), own_cpu_seconds()
            function_cpu0 = sum(process_cpu_seconds(pid) for pid in functions)
            began = time.perf_counter()
            with ThreadPoolExecutor(POSTERS) as pool:
                posted = list(pool.map(self.post, range(count)))
            post_window = time.perf_counter() - began
            busy, calls = dict(self.tap.busy), dict(self.tap.calls)
            deadline = time.monotonic() + timeout
            while self.settled() < self._settled + count:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode})")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{count} invoices not settled in {timeout:.0f} s")
                time.sleep(0.5)
            worker_cpu = process_cpu_seconds(worker.pid) - worker_cpu0
            host_cpu = own_cpu_seconds() - host_cpu0
            function_cpu = sum(process_cpu_seconds(pid) for pid in functions) - function_cpu0
            by_server = threads.cpu
        self._settled += count
        issued = self.issued_at([p.invoice_id for p in posted])
        if len(issued) != count:
            raise RuntimeError(f"{count - len(issued)} invoices settled as FAILED")
        return Batch(
            posted=posted,
            issued_at=issued,
            post_window=post_window,
            busy=busy,
            calls=calls,
            host_cpu=host_cpu,
            worker_cpu=worker_cpu,
            function_cpu=function_cpu,
            cpu_by_server=by_server,
        )


@contextlib.contextmanager
def _quiet_handlers() -> Iterator[None]:
    """No EMF metric line per POST on the bench's output (the demo does the same)."""
    names = ("POWERTOOLS_METRICS_DISABLED",)
    saved = {name: os.environ.get(name) for name in names}
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def rows(ctx: Context) -> list[Row]:
    count = ctx.iterations(*BATCH)
    with E2e.running() as e2e:
        e2e.batch(2)  # warm: the handlers' first calls, both tenants, the worker's first send
        measured = e2e.batch(count)
        with ThreadPoolExecutor(POSTERS) as pool:
            gets = list(pool.map(e2e.get_status, measured.posted))
        rss = peak_memory_mb(e2e.stack.worker_process.pid)
        profile_file = e2e.state_dir / "host.prof"
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            profiled = e2e.batch(ctx.iterations(*PROFILE_BATCH))
        finally:
            profiler.disable()
        profiler.dump_stats(str(profile_file))
        profile_text = profile_note("this process (gateway + moto + simulator)",
                                     load_profile(profile_file))  # fmt: skip

    statuses = [s for s, _ in gets]
    issued_by_get = statuses.count("ISSUED")
    latencies = measured.latencies
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    post_p50 = statistics.median(p.seconds for p in measured.posted)
    get_p50 = statistics.median(s for _, s in gets)
    emit_busy = measured.busy.get("EmitFn", 0.0)
    emit_calls = measured.calls.get("EmitFn", 0) or 1
    post_rate = count / measured.post_window
    ctx.measured["e2e_invoices_per_second"] = measured.rate
    ctx.measured["e2e_p50_seconds"] = p50
    ctx.measured["e2e_p99_seconds"] = p99
    ctx.notes["e2e"] = note(
        count=count,
        emit_busy=emit_busy,
        emit_calls=emit_calls,
        post_window=measured.post_window,
        p50=p50,
        post_p50=post_p50,
        host_cpu=measured.host_cpu / count,
        cpu_by_server={k: v / count for k, v in measured.cpu_by_server.items()},
        worker_cpu=measured.worker_cpu / count,
        function_cpu=measured.function_cpu / count,
        worker_rate=ctx.measured.get("worker_invoices_per_second"),
        worker_concurrency=ctx.measured.get("worker_concurrency"),
        profiled_rate=profiled.rate,
        profile_text=profile_text,
    )
    return [
        Row(
            "sustained invoices/s (first POST -> last ISSUED)",
            f"{measured.rate:.1f}",
            note=f"{count:,} invoices in {measured.window:.1f} s; {POSTERS} POST threads",
        ),
        Row("POST -> ISSUED p50", ms(p50), note=f"min {ms(latencies[0])}"),
        Row("POST -> ISSUED p99", ms(p99), note=f"max {ms(latencies[-1])}"),
        Row(
            "POST rate (201s/s) and round trip p50",
            f"{post_rate:.1f}/s, {ms(post_p50)}",
            note=f"EmitFn {emit_busy / emit_calls * 1e3:.1f} ms per invocation (its process takes"
            f" one event at a time), busy {emit_busy / measured.post_window:.0%} of the time",
        ),
        Row(
            "GET per invoice at the end: ISSUED / total, round trip p50",
            f"{issued_by_get:,} / {len(gets):,}, {ms(get_p50)}",
            "all ISSUED",
            issued_by_get == len(gets),
        ),
        Row("worker peak RSS (VmHWM), whole run", f"{rss:.0f} MB"),
    ]


def note(  # noqa: PLR0913 - keyword-only: the figures of one run, for its prose
    *,
    count: int,
    emit_busy: float,
    emit_calls: int,
    post_window: float,
    p50: float,
    post_p50: float,
    host_cpu: float,
    cpu_by_server: Mapping[str, float],
    worker_cpu: float,
    function_cpu: float,
    worker_rate: float | None,
    worker_concurrency: float | None,
    profiled_rate: float,
    profile_text: str,
) -> str:
    """The prose under the table, from this run (seconds; CPU per invoice), and section 3's
    worker rate when it ran in the same invocation."""
    post_rate = count / post_window
    busy_share = emit_busy / post_window
    cpu_split = ", ".join(
        f"{k} {v * 1e3:.1f} ms" for k, v in sorted(cpu_by_server.items()) if v > 0
    )
    per_call = emit_busy / emit_calls
    worker = (
        f", while the worker alone took {worker_rate:.0f}/s at c={worker_concurrency:.0f} "
        "(section 3)"
        if worker_rate is not None and worker_concurrency is not None
        else ""
    )
    waiting = post_p50 / p50 if p50 else 0.0
    return "\n".join(
        [
            f"{count:,} invoices POSTed by {POSTERS} threads as both tenants (API key + Cognito "
            f"JWT on every call), worker at WORKER_CONCURRENCY={WORKER_CONCURRENCY}, simulator "
            f"latency {LATENCY_SECONDS * 1e3:.0f} ms. POST -> ISSUED is the ledger's "
            "`processedAt` (the worker's clock at the ISSUED write) minus the POST's start.",
            "",
            "**What bounds it: the emit side, serialized.** The local stack runs each "
            "function in one process, one event at a time (one warm Lambda execution "
            f"environment). EmitFn was invoked {emit_busy:.1f} s of the "
            f"{post_window:.1f} s the POSTs took ({busy_share:.0%}), "
            f"{per_call * 1e3:.1f} ms per call, so POSTs arrive at most at "
            f"{emit_calls / max(emit_busy, 1e-9):.0f}/s (measured {post_rate:.1f}/s){worker}. "
            f"Of the POST -> ISSUED p50 ({p50 * 1e3:,.0f} ms), the POST's own round trip takes "
            f"{post_p50 * 1e3:,.0f} ms at the median ({waiting:.0%}): EmitFn's "
            f"{per_call * 1e3:.0f} ms of work, the rest the wait while {POSTERS} clients queue "
            "on one EmitFn. What remains is the worker: its AWS calls and the "
            f"{LATENCY_SECONDS * 1e3:.0f} ms send. Deployed, API Gateway runs as many EmitFn "
            "instances as requests arrive, so this bound is the local stack's, not the "
            "platform's.",
            "",
            f"CPU per invoice: this process {host_cpu * 1e3:.1f} ms (by server thread: "
            f"{cpu_split}; `gateway` is the routing, API key and JWT checks; `other` is "
            f"moto's state machine executions and this harness), EmitFn's and GetFn's "
            f"processes {function_cpu * 1e3:.1f} ms, the worker {worker_cpu * 1e3:.1f} ms.",
            "",
            f"Profiled second batch ({profiled_rate:.1f} invoices/s under cProfile):",
            "",
            profile_text,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ctx = Context(quick="--quick" in args)
    result = rows(ctx)
    print(text_table(Section("e2e", "4. End-to-end", rows), result))
    print(ctx.notes.get("e2e", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
