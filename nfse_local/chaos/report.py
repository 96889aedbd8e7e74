"""What a chaos run found: its figures, the invariants' counts and every violation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nfse_local.chaos.config import ChaosConfig


@dataclass
class ChaosReport:
    """The figures of one run; `violations` holds every broken invariant."""

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
