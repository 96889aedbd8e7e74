"""Each provider call ends by one absolute deadline (connect + read seconds), whatever the
provider does: the send lease relies on it (docs/architecture.md, "The send lease")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.port import FailureKind, Issued, TemporaryFailure
from nfse_local.simulator import ProviderSimulator
from tests.conftest_provider import rps_key

pytestmark = pytest.mark.integration

CONNECT, READ = 1.0, 1.0
DEADLINE = CONNECT + READ


@pytest.fixture
def dripping() -> Iterator[ProviderSimulator]:
    # One byte every 0.8 s: no single read waits a whole second, so a per-read timeout of 1 s
    # never fires, and the answer (hundreds of bytes) would take minutes.
    with ProviderSimulator(verify_signatures=False) as sim:
        sim.set_faults(drip_rate=1.0, drip_interval_seconds=0.8, drip_bytes=1)
        yield sim


def test_a_dripping_provider_is_cut_at_the_call_deadline(dripping: ProviderSimulator) -> None:
    """Defect: the deadline was checked only between 64 KiB chunks, so a provider dripping one
    byte every 0.8 s kept a (1 s, 1 s) client for 80 s and more: longer than the send lease,
    while ProcessorFn could decide the invoice."""
    with AbrasfSoapClient(dripping.url, timeout=(CONNECT, READ)) as client:
        started = time.monotonic()
        result = client.consultar_nfse_por_rps(rps_key(1))
        elapsed = time.monotonic() - started
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.TIMEOUT
    # The bound itself, not a speed target: the call may not outlive its deadline (the slack
    # covers scheduling of the timer thread on a busy machine).
    assert elapsed < DEADLINE + 1.5
    assert client.max_call_seconds == DEADLINE


def test_calls_after_a_cut_connection_work(dripping: ProviderSimulator) -> None:
    with AbrasfSoapClient(dripping.url, timeout=(CONNECT, READ)) as client:
        first = client.consultar_nfse_por_rps(rps_key(1))
        dripping.set_faults(drip_rate=0.0)
        second = client.consultar_nfse_por_rps(rps_key(1))
    assert isinstance(first, TemporaryFailure) and first.kind is FailureKind.TIMEOUT
    assert not isinstance(second, TemporaryFailure) or second.kind is not FailureKind.TIMEOUT


def test_a_normal_answer_is_not_affected_by_the_deadline() -> None:
    with (
        ProviderSimulator(verify_signatures=False) as sim,
        AbrasfSoapClient(sim.url, timeout=(CONNECT, READ)) as client,
    ):
        for _ in range(20):  # pooled connections reused under successive deadlines
            result = client.consultar_nfse_por_rps(rps_key(1))
            assert not isinstance(result, TemporaryFailure), result
            assert not isinstance(result, Issued)
