"""The simulator's misbehaviour switches; all off by default.

Each injected fault is counted in `stats()["faults_injected"]` under the name given:

- latency: seconds added before each API request is handled (fixed or a uniform range).
- error_rate ("http_<status>"): an HTML error page with error_status (500/502/503/504) instead
  of processing the request, as the SEFIN's front end answers when the service is down.
- timeout_rate ("timeout"): no answer for timeout_seconds, then the connection is closed;
  nothing processed.
- lost_rate ("lost"): POST /nfse issues the NFS-e, then closes the connection at once.
- issued_then_timeout_rate ("issued_then_timeout"): POST /nfse issues the NFS-e, then holds
  the connection silent for timeout_seconds (longer than a client's timeout), then closes it.
- reject_rate ("reject"): POST /nfse refuses a valid DPS with E9901 (the simulator's own code).
- consult_error_rate ("consult_error"): a consult (HEAD/GET /dps, GET /nfse) answers HTTP 500
  whether or not the NFS-e exists: no proof either way.
- consult_lag_seconds ("consult_lag"): an NFS-e issued less than this many seconds ago is not
  yet visible to the consults (HEAD/GET /dps answer 404, GET /nfse 404), as a service whose
  consult reads a replica does; the duplicate check of POST /nfse (E0014) sees it at once.
  A client's settle_seconds must cover it.

Outcomes can also be forced per nDPS (NacionalFaults.forced) or by a marker in xDescServ:
[sim:reject], [sim:temporary] (503), [sim:lost] (the first time only), [sim:timeout].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final


class Forced(StrEnum):
    """An outcome scripted for a DPS, by nDPS or by a [sim:...] marker in xDescServ."""

    REJECT = "reject"
    TEMPORARY = "temporary"
    LOST = "lost"
    TIMEOUT = "timeout"


_RATES: Final = (
    "error_rate",
    "timeout_rate",
    "lost_rate",
    "issued_then_timeout_rate",
    "reject_rate",
    "consult_error_rate",
)


@dataclass(frozen=True)
class NacionalFaults:
    """Injected misbehaviour; rates are probabilities per request (0..1).

    The docstring of nfse_local.simulator_nacional.faults says what each one does.
    """

    latency: float | tuple[float, float] = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    lost_rate: float = 0.0
    issued_then_timeout_rate: float = 0.0
    reject_rate: float = 0.0
    consult_error_rate: float = 0.0
    consult_lag_seconds: float = 0.0
    forced: dict[int, Forced] = field(default_factory=dict)  # nDPS -> outcome
    seed: int | None = None

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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = list(self.latency) if isinstance(self.latency, tuple) else self.latency
        data["forced"] = {str(k): v.value for k, v in self.forced.items()}
        return data

    def updated(self, changes: dict[str, Any]) -> NacionalFaults:
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
