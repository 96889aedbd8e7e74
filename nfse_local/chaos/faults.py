"""The fault plan: what the provider, EmitFn and the workers suffer during a run, and when
it stops."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from nfse_local.chaos.config import ERROR_STATUSES, ChaosConfig
from nfse_local.chaos.sampling import StatusSampler
from nfse_local.simulator import Forced
from nfse_local.stack import LocalStack


def emit_faults(config: ChaosConfig) -> dict[str, Any]:
    """Fault injection in EmitFn's process (nfse_local.runtime), outside the product code."""
    return {
        "die_before": {
            "PutObject": config.emit_die_before_xml,
            "StartExecution": config.emit_die_before_start,
        },
        "lose_after": {"StartExecution": config.emit_lose_start_answer},
        "seed": config.seed,
    }


def provider_faults_on(stack: Any, config: ChaosConfig) -> None:
    """The providers misbehave at the configured rates: the ABRASF simulator and the simulated
    SEFIN Nacional, each with the faults it has."""
    if stack.nacional_simulator is not None:
        stack.nacional_simulator.set_faults(
            latency=config.latency,
            error_rate=config.error_rate,
            timeout_rate=config.timeout_rate,
            timeout_seconds=config.timeout_seconds,
            lost_rate=config.lost_rate,
            issued_then_timeout_rate=config.issued_then_timeout_rate,
            consult_lag_seconds=config.consult_lag_seconds,
            consult_error_rate=config.consult_internal_error_rate,
            seed=config.seed,
        )
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


def refuse_numbers(stack: Any, config: ChaosConfig, rng: random.Random) -> set[int]:
    """RPS numbers the providers refuse (HTTP 503) until the faults stop; early numbers, so
    their invoices have the time to exhaust their redeliveries."""
    numbers = range(1, max(2, config.invoices // 12))
    forced = set(rng.sample(numbers, min(config.dlq_numbers, len(numbers))))
    for numero in forced:
        stack.simulator.force(numero, Forced.TEMPORARY)
        if stack.nacional_simulator is not None:
            stack.nacional_simulator.force(numero, "temporary")
    return forced


def provider_faults_off(stack: Any) -> None:
    """The providers behave again (their consult lag stays: providers have it anyway)."""
    if stack.nacional_simulator is not None:
        stack.nacional_simulator.set_faults(
            latency=0.0,
            error_rate=0.0,
            timeout_rate=0.0,
            lost_rate=0.0,
            issued_then_timeout_rate=0.0,
            consult_error_rate=0.0,
            forced={},
        )
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


def quiet_resets(stack: LocalStack) -> None:
    """A killed worker resets its connections to the simulator mid-request: expected here,
    so the simulator's server does not print a traceback for each."""
    server = getattr(stack.simulator, "_server", None)
    if server is not None:
        server.handle_error = lambda request, client_address: None


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
        self._all_killed = threading.Event()
        if not self._marks:
            self._all_killed.set()
        self.kills = 0
        self.pids: list[int] = []

    @property
    def done(self) -> bool:
        return self._all_killed.is_set()

    def wait_done(self, timeout: float) -> bool:
        """Returns once every planned kill has happened (True) or `timeout` has passed."""
        return self._all_killed.wait(max(0.0, timeout))

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
                    if self.kills >= len(self._marks):
                        self._all_killed.set()
            self._halt.wait(0.1)
