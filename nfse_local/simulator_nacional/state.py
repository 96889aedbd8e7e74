"""What the simulator remembers: the NFS-e it issued, its counters and its fault settings."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nfse_local.simulator_nacional.faults import NacionalFaults


@dataclass(frozen=True)
class StoredNfse:
    """An NFS-e the simulator issued: its chave, the DPS it came from and its XML."""

    chave: str
    id_dps: str
    inscricao: str  # the emitente's CNPJ or CPF
    n_nfse: int
    xml: bytes  # the NFSe document, UTF-8 with its declaration
    # The consult lag is measured on the monotonic clock, immune to wall-clock steps.
    issued_monotonic: float = field(default_factory=time.monotonic)


class NacionalState:
    """Issued NFS-e, counters and fault settings; every access under one lock."""

    def __init__(self, faults: NacionalFaults) -> None:
        self._lock = threading.RLock()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not security
        self._by_dps: dict[str, StoredNfse] = {}
        self._by_chave: dict[str, StoredNfse] = {}
        self._numbers: Counter[str] = Counter()  # nNFSe per emitente
        self._n_dfse = 0
        self._lost_once: set[str] = set()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total_requests = 0
        self.requests_by_operation: Counter[str] = Counter()
        self.issued = 0
        self.duplicates_refused = 0
        self.rejected = 0
        self.consults: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.issuances_per_dps: Counter[str] = Counter()
        self.tls_client_subjects: Counter[str] = Counter()

    # -- faults

    @property
    def faults(self) -> NacionalFaults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: NacionalFaults) -> None:
        with self._lock:
            if faults.seed is not None and faults.seed != self._faults.seed:
                self._rng = random.Random(faults.seed)  # noqa: S311
            self._faults = faults

    def roll(self, rate: float) -> bool:
        if rate <= 0:  # a fault that is off draws no number
            return False
        with self._lock:
            return self._rng.random() < rate

    def latency(self) -> float:
        with self._lock:
            value = self._faults.latency
            return self._rng.uniform(*value) if isinstance(value, tuple) else value

    def first_loss(self, id_dps: str) -> bool:
        with self._lock:
            if id_dps in self._lost_once:
                return False
            self._lost_once.add(id_dps)
            return True

    # -- counters

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    def count_request(self, operation: str) -> None:
        with self._lock:
            self.total_requests += 1
            self.requests_by_operation[operation] += 1

    def count_consult(self, kind: str) -> None:
        with self._lock:
            self.consults[kind] += 1

    def count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def record_tls_client(self, subject_cn: str) -> None:
        with self._lock:
            self.tls_client_subjects[subject_cn] += 1

    # -- the NFS-e

    def issue(
        self, id_dps: str, inscricao: str, build: Callable[[int, int], StoredNfse]
    ) -> StoredNfse | None:
        """The NFS-e issued now for `id_dps`, or None when one exists already (a duplicate).

        `build(n_nfse, n_dfse)` runs under the lock: one issuance per DPS, even for two
        requests at once.
        """
        with self._lock:
            if id_dps in self._by_dps:
                self.duplicates_refused += 1
                return None
            self._numbers[inscricao] += 1
            self._n_dfse += 1
            stored = build(self._numbers[inscricao], self._n_dfse)
            self._by_dps[id_dps] = stored
            self._by_chave[stored.chave] = stored
            self.issued += 1
            self.issuances_per_dps[id_dps] += 1
            return stored

    def by_dps(self, id_dps: str) -> StoredNfse | None:
        with self._lock:
            return self._by_dps.get(id_dps)

    def by_chave(self, chave: str) -> StoredNfse | None:
        with self._lock:
            return self._by_chave.get(chave)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "requests_by_operation": dict(self.requests_by_operation),
                "issued": self.issued,
                "duplicates_refused": self.duplicates_refused,
                "rejected": self.rejected,
                "consults": sum(self.consults.values()),
                "consults_by_kind": dict(self.consults),
                "faults_injected": dict(self.faults_injected),
                "issuances_per_dps": dict(self.issuances_per_dps),
                "max_issuances_per_dps": max(self.issuances_per_dps.values(), default=0),
                "tls_client_subjects": dict(self.tls_client_subjects),
                "stored": len(self._by_dps),
            }

    def reset(self) -> None:
        with self._lock:
            self._by_dps.clear()
            self._by_chave.clear()
            self._numbers.clear()
            self._n_dfse = 0
            self._lost_once.clear()
            self._reset_counters()
