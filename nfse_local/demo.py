"""`make demo`: the whole platform on this machine, a batch of invoices, and their fate.

Brings the embedded stack up, emits sample invoices over HTTP as two tenants (some scripted to
fail at the provider, one to go through the DLQ and the reprocessor; one of a Simples Nacional
company and one export of services among them), shows progress while they move, then prints a
table, the count per fiscal kind and where the XML files are. Exits non-zero if any invoice did not
reach the final state it was meant to reach, or DynamoDB and the ledger disagree.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from nfse_core.store.ledger import Ledger
from nfse_core.store.sql_executors import SqlAlchemyExecutor
from nfse_local.samples import export_body, invoice_body, nacional_body, simples_nacional_body
from nfse_local.stack import ROOT, DeploymentOptions, LocalStack, StackOptions, WorkerOptions

# The fiscal kinds of invoice the demo emits, each with the body builder of nfse_local.samples.
REGULAR = "regular"
SIMPLES_NACIONAL = "Simples Nacional"
EXPORT = "export"
# Issued through the Sistema Nacional NFS-e (Belo Horizonte; the simulated SEFIN Nacional).
NACIONAL = "NFS-e Nacional"
BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    REGULAR: invoice_body,
    SIMPLES_NACIONAL: simples_nacional_body,
    EXPORT: export_body,
    NACIONAL: nacional_body,
}


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    tenant: str
    cnpj: str
    discriminacao: str
    expected: str  # final status
    total: str = "1500.00"
    kind: str = REGULAR


CASES: tuple[Case, ...] = (
    *(
        Case(
            f"software #{i}",
            "acme",
            "11222333000181",
            f"Desenvolvimento de software {i}",
            "ISSUED",
            f"{1000 + i * 37}.50",
        )
        for i in range(1, 5)
    ),
    Case(
        "Simples Nacional",
        "acme",
        "11222333000181",
        "Manutencao de software (ME/EPP optante pelo Simples Nacional)",
        "ISSUED",
        "800.00",
        SIMPLES_NACIONAL,
    ),
    Case(
        "export",
        "acme",
        "11222333000181",
        "Desenvolvimento de software para cliente no exterior",
        "ISSUED",
        "12000.00",
        EXPORT,
    ),
    Case("alphanumeric CNPJ", "acme", "12ABC34501DE35", "Licenciamento de software", "ISSUED"),
    *(
        Case(
            f"consulting #{i}",
            "globex",
            "11444777000161",
            f"Consultoria em gestao {i}",
            "ISSUED",
            "880.00",
        )
        for i in range(1, 2)
    ),
    *(
        Case(
            f"NFS-e Nacional #{i}",
            "globex",
            "11444777000161",
            f"Consultoria em gestao (Belo Horizonte) {i}",
            "ISSUED",
            f"{640 + i * 45}.00",
            NACIONAL,
        )
        for i in range(1, 3)
    ),
    Case("answer lost once", "globex", "11444777000161", "Suporte tecnico [sim:lost]", "ISSUED"),
    Case("rejected by provider", "acme", "11222333000181", "Servico [sim:reject]", "FAILED"),
    Case("provider down -> DLQ", "globex", "11444777000161", "Auditoria [sim:temporary]", "FAILED"),
)


@dataclass
class Tracked:
    case: Case
    invoice_id: str
    posted_at: float
    status: str = "EMITTED"
    view: dict[str, Any] = field(default_factory=dict)
    settled_after: float | None = None


def _post(stack: LocalStack, case: Case, index: int) -> Tracked:
    tenant = stack.tenant(case.tenant)
    body = BODIES[case.kind](
        case.cnpj, total=case.total, discriminacao=case.discriminacao, reference=f"DEMO-{index:03d}"
    )
    began = time.monotonic()
    answer = requests.post(
        f"{stack.api_url}/invoices",
        json=body,
        headers={"x-api-key": stack.api_key, "Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise SystemExit(f"POST for {case.label} answered {answer.status_code}: {answer.text}")
    return Tracked(case, answer.json()["invoiceId"], began)


def _refresh(stack: LocalStack, tracked: Tracked) -> None:
    tenant = stack.tenant(tracked.case.tenant)
    answer = requests.get(
        f"{stack.api_url}/invoices/{tracked.invoice_id}",
        headers={"x-api-key": stack.api_key, "Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    answer.raise_for_status()
    tracked.view = answer.json()
    tracked.status = tracked.view["status"]
    if tracked.status in {"ISSUED", "FAILED"} and tracked.settled_after is None:
        tracked.settled_after = time.monotonic() - tracked.posted_at


def _progress(batch: list[Tracked]) -> str:
    counts = Counter(t.status for t in batch)
    return "  ".join(
        f"{s}={counts.get(s, 0)}" for s in ("EMITTED", "PROCESSING", "ISSUED", "FAILED")
    )


def _reprocess_dlq(stack: LocalStack) -> dict[str, int]:
    """Invoke ProcessorFn, as an operator would (its schedule runs every 15 minutes)."""
    response = stack.invoke("ProcessorFn", {"maxMessages": 10})
    return {k: int(v) for k, v in response.items()}


def _dlq_depth(stack: LocalStack) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _download(stack: LocalStack, batch: list[Tracked], target: Path) -> None:
    s3 = stack.client("s3")
    for tracked in batch:
        folder = target / tracked.invoice_id
        folder.mkdir(parents=True, exist_ok=True)
        for kind in ("xml", "signed", "nfse"):
            key = f"{kind}/{tracked.invoice_id}.xml"
            try:
                body = s3.get_object(Bucket=stack.resources.docs_bucket, Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
            (folder / f"{kind}.xml").write_bytes(body)


def _ledger_mismatches(stack: LocalStack, batch: list[Tracked]) -> list[str]:
    executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
    try:
        ledger = Ledger(executor)
        problems = []
        for tracked in batch:
            row = ledger.get(tracked.invoice_id)
            if (
                row is None
                or row.status.value != tracked.status
                or row.nfse_number != tracked.view.get("nfseNumber")
            ):
                problems.append(tracked.invoice_id)
        return problems
    finally:
        executor.engine.dispose()


def run(timeout: float = 300.0, state_dir: Path | None = None) -> int:
    started = time.monotonic()
    # Its own state dir: the demo may run while `make serve` keeps a stack up in .local/.
    state_dir = state_dir or ROOT / ".local" / "demo"
    worker_log = state_dir / "worker.log"
    worker_log.unlink(missing_ok=True)
    with LocalStack(
        StackOptions(state_dir=state_dir, simulator=True),
        worker=WorkerOptions(start=True, log=worker_log),
        # A deployment choice (the template's MaxReceiveCount parameter, default 5): the DLQ
        # case reaches ProcessorFn after two receives, each with the production backoff.
        deployment=DeploymentOptions(parameters={"MaxReceiveCount": "2"}),
    ) as stack:
        ready = time.monotonic() - started
        print(f"\nEmitting {len(CASES)} invoices over HTTP ({stack.api_url}) ...")
        batch = [_post(stack, case, i) for i, case in enumerate(CASES, start=1)]
        reprocessed: dict[str, int] | None = None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for tracked in batch:
                if tracked.status not in {"ISSUED", "FAILED"}:
                    _refresh(stack, tracked)
            line = _progress(batch)
            if line != last:
                print(f"  [{time.monotonic() - started:5.1f}s] {line}")
                last = line
            pending = [t for t in batch if t.status not in {"ISSUED", "FAILED"}]
            if not pending:
                break
            if reprocessed is None and _dlq_depth(stack) > 0:
                print("  DLQ has a message: invoking ProcessorFn to reprocess it ...")
                reprocessed = _reprocess_dlq(stack)
                print(f"  ProcessorFn summary: {reprocessed}")
            time.sleep(0.3)
        documents = stack.state_dir / "documents"
        _download(stack, batch, documents)
        mismatches = _ledger_mismatches(stack, batch)
        stats = stack.simulator.stats()
        national = stack.nacional_simulator.stats() if stack.nacional_simulator else {}
        # Both providers' NFS-e: the ABRASF simulator's and the simulated SEFIN Nacional's.
        stats = stats | {
            "issued": stats["issued"] + national.get("issued", 0),
            "nacional_issued": national.get("issued", 0),
            "duplicates_refused": stats["duplicates_refused"]
            + national.get("duplicates_refused", 0),
        }
        issued_here = sum(1 for t in batch if t.status == "ISSUED")
        return _report(
            batch,
            ready=ready,
            documents=documents,
            mismatches=mismatches,
            stats=stats,
            issued_here=issued_here,
            bucket=stack.resources.docs_bucket,
        )


def _kinds(batch: list[Tracked]) -> str:
    """The count per fiscal kind and final status, e.g. "regular 11 (FAILED 2, ISSUED 9)"."""
    parts = []
    for kind in BODIES:
        mine = [t for t in batch if t.case.kind == kind]
        statuses = Counter(t.status for t in mine)
        detail = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
        parts.append(f"{kind} {len(mine)} ({detail})")
    return ", ".join(parts)


def _report(  # noqa: PLR0913 - keyword-only: the figures of one run
    batch: list[Tracked],
    *,
    ready: float,
    documents: Path,
    mismatches: list[str],
    stats: dict[str, Any],
    issued_here: int,
    bucket: str,
) -> int:
    print()
    header = (
        f"{'invoiceId':26}  {'case':22}  {'expected':8}  {'status':8}  {'NFS-e':>6}  "
        f"{'time':>7}  note"
    )
    print(header)
    print("-" * len(header))
    wrong = []
    for t in batch:
        ok = t.status == t.case.expected
        if not ok:
            wrong.append(t)
        seconds = f"{t.settled_after:6.2f}s" if t.settled_after is not None else "   -   "
        error = (t.view.get("error") or {}).get("code", "")
        note = error if t.status == "FAILED" else ""
        flag = "" if ok else "  <-- unexpected"
        print(
            f"{t.invoice_id:26}  {t.case.label[:22]:22}  {t.case.expected:8}  {t.status:8}  "
            f"{t.view.get('nfseNumber') or '-':>6}  {seconds}  {note}{flag}"
        )
    settled = sorted(
        t.settled_after for t in batch if t.settled_after is not None and t.status == "ISSUED"
    )
    print()
    print(
        f"stack ready in {ready:.1f}s; {len(batch)} invoices; "
        f"ISSUED {issued_here}, FAILED {sum(1 for t in batch if t.status == 'FAILED')}"
    )
    if settled:
        print(
            f"time from POST to ISSUED: median {settled[len(settled) // 2]:.2f}s, "
            f"max {settled[-1]:.2f}s"
        )
    print("by fiscal kind: " + _kinds(batch))
    print(
        f"providers: {stats['issued']} NFS-e issued ({stats['nacional_issued']} by the SEFIN "
        "Nacional), "
        f"{stats['duplicates_refused']} duplicates refused, "
        f"faults injected {stats['faults_injected']}"
    )
    print(f"XML documents (s3://{bucket}/xml|signed|nfse/<invoiceId>.xml) copied to {documents}/")
    print(f"worker log (JSON lines, invoice_id on each): {documents.parent / 'worker.log'}")
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} invoice(s) not in their expected final state")
    if mismatches:
        problems.append(f"ledger disagrees with DynamoDB for {mismatches}")
    for kind in (SIMPLES_NACIONAL, EXPORT, NACIONAL):
        if not any(t.case.kind == kind and t.status == "ISSUED" for t in batch):
            problems.append(f"no {kind} invoice was issued")
    if stats["issued"] != issued_here:
        problems.append(
            f"simulator issued {stats['issued']} NFS-e for {issued_here} ISSUED invoices"
        )
    if problems:
        print("DEMO FAILED: " + "; ".join(problems))
        return 1
    print(
        "demo OK: every invoice reached its expected final state; ledger and DynamoDB agree; "
        "one NFS-e per ISSUED invoice"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfse_local.demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, help="where the stack keeps its files")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    args = parser.parse_args(argv)
    return run(args.timeout, args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
