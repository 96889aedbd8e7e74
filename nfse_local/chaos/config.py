"""The chaos run's settings: volume, the template parameters it deploys with, the faults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ERROR_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """One chaos run: how many invoices, kills and which seed, and every fault's rate."""

    invoices: int = 2000
    kills: int = 6
    seed: int = 1
    post_threads: int = 4
    # Template parameters (deployment choices, not deviations): two worker tasks of this
    # many threads; redelivery to the DLQ after 3 receives; the sweeper acting within minutes
    # (SweepRedriveAfterSeconds, SweepLiveWindowSeconds: 900 and 2100 by default, 60 at least).
    workers: int = 2
    worker_concurrency: int = 8
    max_receive_count: int = 3
    sweep_redrive_after: int = 60
    sweep_live_window: int = 150
    # SweeperFn's period while the run settles (SweepScheduleExpression: 5 minutes).
    sweep_every: float = 30.0
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
