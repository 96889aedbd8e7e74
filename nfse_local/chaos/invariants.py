"""The invariants of docs/architecture.md, checked after a run against what the clients were
told, DynamoDB, the ledger and the provider."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from nfse_core.domain.ids import keyed_invoice_id
from nfse_core.domain.invoice import InvoiceRecord
from nfse_core.domain.status import FINAL, InvoiceStatus
from nfse_core.providers.nacional.ids import dps_id
from nfse_core.store.invoices import from_item
from nfse_core.store.sql_executors import SqlAlchemyExecutor
from nfse_local.chaos.clients import Abandoned, Posted
from nfse_local.chaos.probes import SELECT_LEDGER, scan
from nfse_local.chaos.report import ChaosReport
from nfse_local.chaos.sampling import StatusSampler, backward_moves
from nfse_local.samples import NACIONAL_MUNICIPIO
from nfse_local.stack import LocalStack


def check_samples(report: ChaosReport, sampler: StatusSampler) -> None:
    """No status moved backwards in what the sampler saw."""
    report.samples = sampler.scans
    report.ledger_samples = sampler.ledger_reads
    report.transitions_seen = sum(len(s) - 1 for s in sampler.dynamodb.values())
    moves = backward_moves(sampler.dynamodb) + [
        f"ledger {p}" for p in backward_moves(sampler.ledger)
    ]
    report.backward_moves = len(moves)
    for move in moves:
        report.violation(f"status moved backwards: {move}")


def verify(
    stack: LocalStack, report: ChaosReport, accepted: list[Posted], abandoned: list[Abandoned]
) -> None:
    """Compare what the client was told, DynamoDB, the ledger and the provider."""
    records = {
        record.invoice_id: record
        for record in (
            from_item(item)
            for item in scan(stack.client("dynamodb"), stack.resources.invoices_table)
        )
    }
    executor = SqlAlchemyExecutor.from_url(stack.ledger_url)
    try:
        ledger = {str(r["invoice_id"]): r for r in executor.execute(SELECT_LEDGER, {})}
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


def _provider_of(stack: LocalStack, record: InvoiceRecord) -> str:
    return "nacional" if record.municipio == NACIONAL_MUNICIPIO else "abrasf"


def _numbering(stack: LocalStack, record: InvoiceRecord) -> str:
    """The series an NFS-e number belongs to: the ABRASF simulator numbers all its NFS-e in
    one; the SEFIN Nacional numbers each emitente's (nNFSe)."""
    provider = _provider_of(stack, record)
    return f"{provider}:{record.cnpj}" if provider == "nacional" else provider


def _stored(stack: LocalStack, record: InvoiceRecord) -> str | None:
    """The number of the NFS-e the invoice's provider holds for its RPS (or DPS), or None."""
    if _provider_of(stack, record) == "nacional" and stack.nacional_simulator is not None:
        held = stack.nacional_simulator.issued(
            dps_id(record.municipio, record.cnpj, record.rps.serie, record.rps.numero)
        )
        return None if held is None else str(held.n_nfse)
    stored = stack.simulator.issued(
        record.cnpj, record.rps.numero, record.rps.serie, record.rps.tipo
    )
    return None if stored is None else str(stored.numero)


def _provider_counts(stack: LocalStack, report: ChaosReport) -> None:
    """The providers' own counts: faults, requests, NFS-e issued, and issuances per RPS/DPS
    (more than one is a duplicate)."""
    stats = stack.simulator.stats()
    report.faults = dict(stats["faults_injected"])
    report.requests_by_operation = dict(stats["requests_by_operation"])
    report.simulator_issued = int(stats["issued"])
    for key, count in stats["issuances_per_rps"].items():
        if count != 1:
            report.duplicated += count - 1
            report.violation(f"RPS {key}: the provider issued {count} NFS-e")
    nacional = stack.nacional_simulator
    if nacional is not None:
        national = nacional.stats()
        for name, count in national["faults_injected"].items():
            report.faults[f"nacional:{name}"] = count
        for name, count in national["requests_by_operation"].items():
            report.requests_by_operation[f"nacional:{name}"] = count
        report.simulator_issued += int(national["issued"])
        for key, count in national["issuances_per_dps"].items():
            if count != 1:
                report.duplicated += count - 1
                report.violation(f"DPS {key}: the SEFIN issued {count} NFS-e")


def _check_provider(
    stack: LocalStack, report: ChaosReport, records: dict[str, InvoiceRecord]
) -> None:
    """One NFS-e per ISSUED invoice (the one it records), none for any other invoice, at the
    provider of the invoice's standard (the ABRASF simulator, or the simulated SEFIN Nacional
    for the municipalities the registry maps to it)."""
    _provider_counts(stack, report)
    nfse_numbers: Counter[str] = Counter()
    for record in records.values():
        stored = _stored(stack, record)
        if record.status is InvoiceStatus.ISSUED:
            nfse_numbers[f"{_numbering(stack, record)}:{record.nfse_number}"] += 1
            if stored is None:
                report.violation(f"{record.invoice_id}: ISSUED, but the provider has no NFS-e")
            elif str(stored) != record.nfse_number:
                report.duplicated += 1
                report.violation(
                    f"{record.invoice_id}: records NFS-e {record.nfse_number}, the provider"
                    f" issued {stored} for its RPS"
                )
        elif stored is not None:
            report.duplicated += 1
            report.violation(
                f"{record.invoice_id}: {record.status}, but the provider issued NFS-e"
                f" {stored} for its RPS"
            )
    for number, count in nfse_numbers.items():  # numbers are per provider: keyed with it
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
