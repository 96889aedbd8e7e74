"""The chaos run: the stack with the run's deployment, the posting under faults and worker
kills, then the settling, and the checks."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from nfse_core.domain.ids import keyed_invoice_id
from nfse_local.chaos.clients import Abandoned, Posted, post_all
from nfse_local.chaos.config import ChaosConfig
from nfse_local.chaos.faults import (
    Monkey,
    emit_faults,
    provider_faults_off,
    provider_faults_on,
    quiet_resets,
    refuse_numbers,
)
from nfse_local.chaos.invariants import check_samples, verify
from nfse_local.chaos.probes import execution_names, queue_depth, scan, scratch_ledger
from nfse_local.chaos.report import ChaosReport
from nfse_local.chaos.sampling import StatusSampler
from nfse_local.runtime import FAULTS_ENV
from nfse_local.stack import ROOT, DeploymentOptions, LocalStack, StackOptions, WorkerOptions


def _reprocess_dlq(stack: LocalStack) -> dict[str, int]:
    """ProcessorFn, invoked in its own process as its schedule (or an operator) would."""
    response = stack.invoke("ProcessorFn", {"maxMessages": 100})
    return {k: int(v) for k, v in response.items()}


def _sweep(stack: LocalStack) -> dict[str, int]:
    """SweeperFn, as its schedule would."""
    response = stack.invoke("SweeperFn", {})
    return {k: int(v) for k, v in response.items()}


def run(config: ChaosConfig, echo: Callable[[str], None] | None = None) -> ChaosReport:
    """One chaos run with `config` on a stack of its own; its report. `echo` prints progress
    (stdout by default)."""
    say = echo or (lambda line: print(line, flush=True))
    state_dir = (config.state_dir or ROOT / ".local" / "chaos").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    worker_log = state_dir / "worker.log"
    worker_log.unlink(missing_ok=True)
    report = ChaosReport(config)
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
                function_env={"EmitFn": {FAULTS_ENV: json.dumps(emit_faults(config))}},
            ),
            echo=lambda line: None,
        ) as stack,
    ):
        report.ledger = "PostgreSQL" if database_url else "SQLite"
        quiet_resets(stack)
        report.startup_seconds = stack.startup_seconds
        accepted, abandoned = _drive(stack, config, report, say)
        report.emit_deaths = stack.functions["EmitFn"].restarts
        verify(stack, report, accepted, abandoned)
    return report


def _drive(
    stack: LocalStack, config: ChaosConfig, report: ChaosReport, say: Callable[[str], None]
) -> tuple[list[Posted], list[Abandoned]]:
    """POST everything under faults and kills, then settle; the accepted invoices, and the
    requests whose clients gave up."""
    rng = random.Random(config.seed)  # noqa: S311 - fault schedule, not security
    provider_faults_on(stack, config)
    forced = refuse_numbers(stack, config, rng)
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
        posted, gave_up = post_all(
            stack, config, report, sampler=sampler, monkey=monkey, began=began, say=say
        )
        accepted.extend(posted)
        abandoned.extend(gave_up)
        posting.clear()
        deadline = time.monotonic() + config.settle_timeout
        # Faults stay on until every planned kill has happened (or the time is up).
        monkey.wait_done(deadline - time.monotonic())
        doomed = _await_dlq(stack, forced, min(deadline, time.monotonic() + 180))
        say(f"  [{time.monotonic() - began:6.1f}s] {doomed} messages of refused RPS in the DLQ")
        monkey.quiet()
        provider_faults_off(stack)
        say(f"  [{time.monotonic() - began:6.1f}s] faults off; settling (DLQ via ProcessorFn)")
        _settle(
            stack,
            report,
            sampler=sampler,
            ids={str(p.invoice_id) for p in accepted}
            | {keyed_invoice_id(a.tenant, a.key) for a in abandoned},
            deadline=deadline,
            sweep_every=config.sweep_every,
            began=began,
            say=say,
        )
        report.wall_seconds = time.monotonic() - began
    finally:
        monkey.stop()
        sampler.stop()
    sampler.sample_once()
    report.kills = monkey.kills
    check_samples(report, sampler)
    if any(p.poll() is not None for p in stack.worker_processes):
        report.violation("a worker died on its own")
    return accepted, abandoned


def _await_dlq(stack: LocalStack, forced: set[int], deadline: float) -> int:
    """Faults stay on until every message of an invoice with a refused RPS number has reached
    the DLQ; how many that is."""
    doomed = _doomed_messages(stack, forced)
    sqs = stack.client("sqs")
    while time.monotonic() < deadline and queue_depth(sqs, stack.resources.dlq_url) < doomed:
        time.sleep(0.5)
    return doomed


def _doomed_messages(stack: LocalStack, forced: set[int]) -> int:
    """The messages bound for the DLQ once posting is over: one per execution started for an
    invoice with a refused RPS number (each execution queues one message, which the provider
    refuses at every receive). An invoice whose emit stopped before its execution has none:
    the sweeper re-drives it, or fails it (EMIT_INCOMPLETE) when its XML was never stored."""
    items = scan(stack.client("dynamodb"), stack.resources.invoices_table)
    doomed = {
        item["invoiceId"]["S"] for item in items if int(item["rps"]["M"]["numero"]["N"]) in forced
    }
    names = execution_names(stack.client("stepfunctions"), stack.resources.state_machine_arn)
    # An execution is named after its invoice; a resumed emit's adds "-<suffix>".
    return sum(name in doomed or name.rpartition("-")[0] in doomed for name in names)


def _settle(  # noqa: PLR0913 - keyword-only: the run's sampler, clock and output
    stack: LocalStack,
    report: ChaosReport,
    *,
    sampler: StatusSampler,
    ids: set[str],
    deadline: float,
    sweep_every: float,
    began: float,
    say: Callable[[str], None],
) -> None:
    """Until every invoice is final and in the ledger: ProcessorFn whenever the DLQ holds
    messages, SweeperFn every `sweep_every` seconds (as their schedules would, sooner). An
    invoice whose client gave up before it was recorded never appears: it is not pending."""
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
        if queue_depth(sqs, stack.resources.dlq_url, visible_only=True):
            dlq.update(_reprocess_dlq(stack))
            report.dlq_runs += 1
        if time.monotonic() >= next_sweep:
            swept.update(_sweep(stack))
            report.sweeper_runs += 1
            next_sweep = time.monotonic() + sweep_every
        line = f"{len(pending)} pending, DLQ {dict(dlq)}, swept {dict(swept)}"
        if line != last_line:
            say(f"  [{time.monotonic() - began:6.1f}s] {line}")
            last_line = line
        time.sleep(1.0)
    report.dlq = dict(dlq)
    report.sweeps = {k: v for k, v in swept.items() if k != "stoppedEarly"}
