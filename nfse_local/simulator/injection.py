"""Where the fault settings act on a request: per-request faults, hangs and forced outcomes."""

from __future__ import annotations

import threading

from lxml import etree

from nfse_local.simulator.documents import any_path
from nfse_local.simulator.faults import Forced
from nfse_local.simulator.soap import Drop, Reply, ReplyNow, fault
from nfse_local.simulator.state import SimulatorState


class FaultInjector:
    """Applies the state's fault settings; waits end early when `stop` is set."""

    def __init__(self, state: SimulatorState, stop: threading.Event) -> None:
        self.state = state
        self._stop = stop

    def before_request(self, soap_ns: str) -> None:
        """The per-request faults: latency, then a hang or an error answer (raised)."""
        faults = self.state.faults
        delay = self.state.latency()
        if delay > 0:
            self._stop.wait(delay)
        if self.state.roll(faults.timeout_rate):
            self.hang()
        if self.state.roll(faults.error_rate):
            self.state.count_fault(f"http_{faults.error_status}")
            raise ReplyNow(Reply(faults.error_status, b"simulated error", "text/plain"))
        if self.state.roll(faults.soap_fault_rate):
            self.state.count_fault("soap_fault")
            raise ReplyNow(fault(soap_ns, "Server: simulated fault"))
        if self.state.roll(faults.soap_fault_200_rate):
            self.state.count_fault("soap_fault_200")
            raise ReplyNow(fault(soap_ns, "Server: simulated fault in an HTTP 200 answer", 200))

    def hang(self) -> None:
        """No answer for timeout_seconds, then Drop."""
        self.state.count_fault("timeout")
        self._stop.wait(self.state.faults.timeout_seconds)
        raise Drop

    def silence(self, seconds: float) -> None:
        """Silence for `seconds` (an NFS-e was issued), then Drop."""
        self._stop.wait(seconds)
        raise Drop

    def forced_outcome(self, document: etree._Element) -> Forced | None:
        """The outcome scripted for the document's RPS number, or by a marker in Discriminacao."""
        numero = document.find(f".//{any_path('IdentificacaoRps/Numero')}")
        if numero is not None and numero.text and numero.text.strip().isdigit():
            outcome = self.state.faults.forced.get(int(numero.text.strip()))
            if outcome is not None:
                return outcome
        discriminacao = document.find(f".//{any_path('Discriminacao')}")
        text = discriminacao.text if discriminacao is not None and discriminacao.text else ""
        for outcome in Forced:
            if f"[sim:{outcome.value}]" in text:
                return outcome
        return None
