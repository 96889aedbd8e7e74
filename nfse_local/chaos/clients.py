"""The ERP clients of a run: each posts its invoice with its Idempotency-Key, retries with
the same key, or gives up."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import requests

from nfse_local.chaos.config import ChaosConfig
from nfse_local.chaos.faults import Monkey
from nfse_local.chaos.report import ChaosReport
from nfse_local.chaos.sampling import StatusSampler
from nfse_local.samples import TENANTS, invoice_body, nacional_body
from nfse_local.stack import LocalStack


@dataclass
class Posted:
    """A POST's outcome: the invoice id of a 201 (None if never accepted), after `tries`."""

    index: int
    tenant: str
    cnpj: str
    total: Decimal
    invoice_id: str | None
    status_code: int
    tries: int


@dataclass
class Abandoned:
    """A POST whose client got no answer and did not retry: its invoice may exist."""

    index: int
    tenant: str
    key: str


def companies() -> list[tuple[str, str]]:
    """(tenant, CNPJ) of every sample company, the order the clients take them in."""
    return [(tenant.tenant_id, cnpj) for tenant in TENANTS for cnpj in tenant.cnpjs]


class Poster:
    """POST /invoices as an ERP would: a unique Idempotency-Key per invoice, and the same key
    again after a connection error, a 5xx or a 409 (in progress) - for as long as a dead
    EmitFn's in-progress record may last (its Timeout). Some clients give up instead after an
    answer that never came (`give_up_rate`)."""

    # Retries spread over about 90 s: longer than EmitFn's Timeout (the in-progress record of
    # a dead invocation lasts that long, answering 409 meanwhile).
    DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0)

    def __init__(self, stack: LocalStack, seed: int, give_up_rate: float) -> None:
        self._stack = stack
        self._seed = seed
        self._give_up_rate = give_up_rate
        self._local = threading.local()
        self._companies = companies()
        self.unavailable = 0
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def __call__(self, index: int) -> Posted | Abandoned:
        rng = random.Random(self._seed * 1_000_003 + index)  # noqa: S311 - test data
        tenant, cnpj = self._companies[index % len(self._companies)]
        total = Decimal(rng.randint(100, 5_000_000)) / 100
        # One invoice in four goes to a municipality of the Sistema Nacional NFS-e: both
        # standards under the same faults and kills.
        # (Its DPS 1.01 carries numeric CNPJs only: the alphanumeric one stays on ABRASF.)
        nacional = index % 4 == 3 and cnpj.isdigit()
        make_body = nacional_body if nacional else invoice_body
        body = make_body(
            cnpj, total=f"{total:.2f}", discriminacao=f"Servicos de TI - lote caos {index}"
        )
        key = str(uuid.UUID(int=rng.getrandbits(128)))
        headers = {
            "x-api-key": self._stack.tenant_api_keys.get(tenant, self._stack.api_key),
            "Authorization": f"Bearer {self._stack.tenant(tenant).token}",
            "Idempotency-Key": key,
        }
        code = 0
        for attempt in range(len(self.DELAYS) + 1):
            if attempt:
                time.sleep(self.DELAYS[attempt - 1])
            try:
                answer = self._session().post(
                    f"{self._stack.api_url}/invoices", json=body, headers=headers, timeout=60
                )
            except requests.RequestException:
                code = 0
            else:
                code = answer.status_code
            if code == 201:
                invoice_id = str(answer.json()["invoiceId"])
                return Posted(index, tenant, cnpj, total, invoice_id, code, attempt + 1)
            if code == 503:
                with self._lock:
                    self.unavailable += 1
            if code in (0, 502) and rng.random() < self._give_up_rate:
                # No answer (the function died): this client never asks again.
                return Abandoned(index, tenant, key)
            if code not in (0, 409) and code < 500:
                break
        return Posted(index, tenant, cnpj, total, None, code, len(self.DELAYS) + 1)


def post_all(  # noqa: PLR0913 - keyword-only: the run's sampler, monkey, clock and output
    stack: LocalStack,
    config: ChaosConfig,
    report: ChaosReport,
    *,
    sampler: StatusSampler,
    monkey: Monkey,
    began: float,
    say: Callable[[str], None],
) -> tuple[list[Posted], list[Abandoned]]:
    """POST every invoice from `config.post_threads` clients; the accepted ones and the
    abandoned ones, with the figures in `report`."""
    results: list[Posted] = []
    abandoned: list[Abandoned] = []
    poster = Poster(stack, config.seed, config.give_up_rate)
    with ThreadPoolExecutor(config.post_threads, thread_name_prefix="post") as pool:
        for posted in pool.map(poster, range(config.invoices)):
            if isinstance(posted, Abandoned):
                abandoned.append(posted)
                continue
            results.append(posted)
            if len(results) % max(1, config.invoices // 10) == 0:
                say(
                    f"  [{time.monotonic() - began:6.1f}s] posted {len(results)}, settled"
                    f" {sampler.final_count}, kills {monkey.kills}"
                )
    accepted = [p for p in results if p.invoice_id is not None]
    report.post_seconds = time.monotonic() - began
    report.posted = len(results) + len(abandoned)
    report.abandoned = len(abandoned)
    report.emit_unavailable = poster.unavailable
    report.accepted = len(accepted)
    report.refused = len(results) - len(accepted)
    report.post_retries = sum(p.tries - 1 for p in results)
    for posted in results:
        if posted.invoice_id is None:
            report.violation(f"POST #{posted.index} never accepted (last {posted.status_code})")
    return accepted, abandoned
