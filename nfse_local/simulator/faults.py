"""The simulator's behaviour switches: injected faults and outcomes forced per RPS.

All are off by default; every injected one is counted in `stats()["faults_injected"]` under
the name given:

- latency: seconds added before each SOAP request is handled (fixed or a uniform range).
- error_rate ("http_<status>"): HTTP error_status (500/502/503/504), no envelope.
- soap_fault_rate ("soap_fault"): a SOAP Fault in an HTTP 500 answer; nothing processed.
- soap_fault_200_rate ("soap_fault_200"): a SOAP Fault in an HTTP 200 answer, as several .NET
  and Java providers send; nothing processed.
- timeout_rate ("timeout"): no answer for timeout_seconds, then the connection is closed;
  nothing processed.
- lost_rate ("lost"): GerarNfse issues the NFS-e, then closes the connection at once without
  an answer.
- issued_then_timeout_rate ("issued_then_timeout"): GerarNfse issues the NFS-e, then keeps
  the connection open without a word for timeout_seconds, then closes it.
- consult_lag_seconds ("consult_lag"): an NFS-e issued less than this many seconds ago is not
  yet visible to ConsultarNfsePorRps, which answers E4 for it, as providers whose consult reads
  a replica or an asynchronous pipeline do; GerarNfse's duplicate check (E10) sees it at once.
- consult_internal_error_rate ("consult_internal_error"): ConsultarNfsePorRps answers a
  ListaMensagemRetorno holding both E4 and E999 ("Erro interno ao processar a consulta"),
  whether or not the NFS-e exists. Such an answer is no proof that nothing was issued.
- drip_rate ("drip"): the request is processed as usual, then the whole HTTP answer (status
  line, headers, body) is written drip_bytes at a time with drip_interval_seconds between
  writes (by default 1 byte every 0.8 s), so a client whose per-read timeout is 1 s never
  times out on a single read; only a deadline on the whole call stops it. The drip ends as
  soon as the client goes away or the simulator stops (`stats()["drips_in_progress"]`).

Outcomes can also be forced per RPS number (FaultConfig.forced) or by a marker in
Discriminacao: [sim:reject], [sim:temporary], [sim:lost] (first time only), [sim:timeout],
[sim:fault].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final


class Forced(StrEnum):
    """An outcome scripted for an RPS, by number or by a [sim:...] marker in Discriminacao."""

    REJECT = "reject"
    TEMPORARY = "temporary"
    LOST = "lost"
    TIMEOUT = "timeout"
    SOAP_FAULT = "fault"


_RATES: Final = (
    "error_rate",
    "soap_fault_rate",
    "soap_fault_200_rate",
    "timeout_rate",
    "lost_rate",
    "issued_then_timeout_rate",
    "consult_internal_error_rate",
    "drip_rate",
)


@dataclass(frozen=True)
class FaultConfig:
    """Injected misbehaviour; rates are probabilities per SOAP request (0..1), all off by default.

    The docstring of nfse_local.simulator.faults says what each one does and under which name
    it is counted.
    """

    latency: float | tuple[float, float] = 0.0  # seconds, fixed or a uniform range
    error_rate: float = 0.0  # HTTP error_status without an envelope
    error_status: int = 503
    soap_fault_rate: float = 0.0  # HTTP 500 with a SOAP Fault
    timeout_rate: float = 0.0  # no answer for timeout_seconds, nothing processed
    timeout_seconds: float = 30.0
    lost_rate: float = 0.0  # GerarNfse issues, then the connection closes unanswered
    forced: dict[int, Forced] = field(default_factory=dict)  # RPS numero -> outcome
    seed: int | None = None
    consult_lag_seconds: float = 0.0  # ConsultarNfsePorRps does not see younger NFS-e
    issued_then_timeout_rate: float = 0.0  # GerarNfse issues, then silence for timeout_seconds
    drip_rate: float = 0.0  # the answer trickles out drip_bytes at a time
    drip_interval_seconds: float = 0.8
    drip_bytes: int = 1
    soap_fault_200_rate: float = 0.0  # HTTP 200 with a SOAP Fault
    consult_internal_error_rate: float = 0.0  # consult answers E4 + E999

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_status not in (500, 502, 503, 504):
            raise ValueError("error_status must be 500, 502, 503 or 504")
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency,) * 2
        if low < 0 or high < low:
            raise ValueError("latency must be >= 0 (and min <= max)")
        if self.timeout_seconds < 0 or self.consult_lag_seconds < 0:
            raise ValueError("timeout_seconds and consult_lag_seconds must be >= 0")
        if self.drip_interval_seconds < 0:
            raise ValueError("drip_interval_seconds must be >= 0")
        if isinstance(self.drip_bytes, bool) or not isinstance(self.drip_bytes, int):
            raise ValueError("drip_bytes must be an integer")
        if self.drip_bytes < 1:
            raise ValueError("drip_bytes must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = list(self.latency) if isinstance(self.latency, tuple) else self.latency
        data["forced"] = {str(k): v.value for k, v in self.forced.items()}
        return data

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with `changes` (JSON-like values, as the admin endpoint receives them)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = dict(changes)
        if isinstance(values.get("latency"), list):
            low, high = values["latency"]
            values["latency"] = (float(low), float(high))
        if "forced" in values:
            values["forced"] = {int(k): Forced(v) for k, v in dict(values["forced"]).items()}
        return replace(self, **values)
