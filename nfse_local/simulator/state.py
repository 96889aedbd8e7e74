"""What the simulator remembers: the NFS-e it issued, its counters and its fault settings."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from lxml import etree

from nfse_local.simulator.faults import FaultConfig

BRT: Final = timezone(timedelta(hours=-3))

RpsKeyTuple = tuple[str, int, str, int]  # cnpj, numero, serie, tipo


@dataclass
class StoredNfse:
    """An NFS-e the simulator issued, as it keeps it."""

    numero: int
    codigo_verificacao: str
    issued_at: datetime
    comp_nfse: etree._Element
    cnpj: str
    inscricao_municipal: str | None
    codigo_municipio: str
    cancelled_at: datetime | None = None
    # The consult lag is measured on the monotonic clock, immune to wall-clock steps.
    issued_monotonic: float = field(default_factory=time.monotonic)


class SimulatorState:
    """Issued NFS-e, counters and fault settings; every access under one lock."""

    def __init__(self, faults: FaultConfig) -> None:
        self._lock = threading.RLock()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not security
        self._store: dict[RpsKeyTuple, StoredNfse] = {}
        self._by_number: dict[int, RpsKeyTuple] = {}
        self._next_number = 1
        self._lost_once: set[RpsKeyTuple] = set()
        self.drips_in_progress = 0  # a gauge, not reset: those handlers are still running
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total_requests = 0
        self.requests_by_operation: Counter[str] = Counter()
        self.issued = 0
        self.duplicates_refused = 0
        self.rejected = 0
        self.cancelled = 0
        self.consults = 0
        self.faults_injected: Counter[str] = Counter()
        self.issuances_per_rps: Counter[str] = Counter()
        # Mutual TLS: the subject CN of the client certificate of each SOAP request.
        self.tls_client_subjects: Counter[str] = Counter()

    @property
    def faults(self) -> FaultConfig:
        with self._lock:
            return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        with self._lock:
            if faults.seed is not None and faults.seed != self._faults.seed:
                self._rng = random.Random(faults.seed)  # noqa: S311
            self._faults = faults

    def roll(self, rate: float) -> bool:
        # A fault that is off draws no number, so seeded runs that do not use the newer
        # faults see the same sequence as before they existed.
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def latency(self) -> float:
        with self._lock:
            value = self._faults.latency
            if isinstance(value, tuple):
                return self._rng.uniform(*value)
            return value

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    def count_request(self, operation: str) -> None:
        with self._lock:
            self.total_requests += 1
            self.requests_by_operation[operation] += 1

    def count_consult(self) -> None:
        with self._lock:
            self.consults += 1

    def count_duplicates(self, count: int) -> None:
        with self._lock:
            self.duplicates_refused += count

    def count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def drip_started(self) -> None:
        with self._lock:
            self.drips_in_progress += 1

    def drip_ended(self) -> None:
        with self._lock:
            self.drips_in_progress -= 1

    def first_loss(self, key: RpsKeyTuple) -> bool:
        with self._lock:
            if key in self._lost_once:
                return False
            self._lost_once.add(key)
            return True

    def issue(
        self, key: RpsKeyTuple, build: Callable[[int], StoredNfse]
    ) -> tuple[StoredNfse, bool]:
        """(the NFS-e of `key`, whether it was issued by this call)."""
        with self._lock:
            existing = self._store.get(key)
            if existing is not None:
                self.duplicates_refused += 1
                return existing, False
            numero = self._next_number
            self._next_number += 1
            stored = build(numero)
            self._store[key] = stored
            self._by_number[numero] = key
            self.issued += 1
            self.issuances_per_rps["/".join(str(part) for part in key)] += 1
            return stored, True

    def find(self, key: RpsKeyTuple) -> StoredNfse | None:
        with self._lock:
            return self._store.get(key)

    def find_number(self, numero: int) -> StoredNfse | None:
        with self._lock:
            key = self._by_number.get(numero)
            return None if key is None else self._store[key]

    def cancel(
        self, stored: StoredNfse, cancelamento: Callable[[datetime], etree._Element]
    ) -> etree._Element | None:
        """Cancel `stored` once: its NfseCancelamento, or None when it was cancelled already.

        One cancellation, even for two requests at once: the check and the change happen under
        the state's lock.
        """
        with self._lock:
            if stored.cancelled_at is not None:
                return None
            stored.cancelled_at = datetime.now(BRT).replace(microsecond=0)
            node = cancelamento(stored.cancelled_at)
            stored.comp_nfse.append(copy.deepcopy(node))
            self.cancelled += 1
            return node

    def record_tls_client(self, subject_cn: str) -> None:
        with self._lock:
            self.tls_client_subjects[subject_cn] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "requests_by_operation": dict(self.requests_by_operation),
                "issued": self.issued,
                "duplicates_refused": self.duplicates_refused,
                "rejected": self.rejected,
                "cancelled": self.cancelled,
                "consults": self.consults,
                "faults_injected": dict(self.faults_injected),
                "issuances_per_rps": dict(self.issuances_per_rps),
                "tls_client_subjects": dict(self.tls_client_subjects),
                "stored": len(self._store),
                "drips_in_progress": self.drips_in_progress,
            }

    def reset(self) -> None:
        with self._lock:
            self._store.clear()
            self._by_number.clear()
            self._lost_once.clear()
            self._next_number = 1
            self._reset_counters()
