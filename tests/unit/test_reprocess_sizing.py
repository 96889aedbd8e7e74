"""ProcessorFn's sizing: the worst case of one DLQ message, how many a run may take, and the
template's Timeout against the registry's slowest provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nfse_core.providers.registry import (
    MAX_CONNECT_SECONDS,
    MAX_READ_SECONDS,
    MAX_SETTLE_SECONDS,
    ProviderRegistry,
)
from nfse_core.services.issue import LEASE_MARGIN, DeliveryRetry, Outcome, Result
from nfse_core.services.reprocess import (
    LAST_CHANCE_RETRY,
    STOP_MARGIN_SECONDS,
    DlqReprocessor,
    dlq_message_seconds,
    run_capacity,
)
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
OLD_TIMEOUT = 300


def processor_timeout() -> int:
    props = load_template(ROOT / "template.yaml")["Resources"]["ProcessorFn"]["Properties"]
    return int(props["Timeout"])


def shipped_worst_case() -> float:
    # What ProcessorFn sees in AWS: no override, every municipality of the registry.
    registry = ProviderRegistry.default(environment="homologacao")
    return dlq_message_seconds(
        LAST_CHANCE_RETRY, registry.longest_call_seconds(), registry.longest_settle()
    )


def accepted_worst_case() -> float:
    # The slowest provider an uploaded registry may bring without a redeploy.
    return dlq_message_seconds(
        LAST_CHANCE_RETRY, MAX_CONNECT_SECONDS + MAX_READ_SECONDS, MAX_SETTLE_SECONDS
    )


def test_one_message_is_the_lease_the_settle_wait_and_the_final_consult() -> None:
    retry = DeliveryRetry(attempts=2, budget_seconds=10.0)
    # 10 s budget + consult and send of 65 s + margin, 60 s settle, 65 s final consult.
    assert dlq_message_seconds(retry, 65.0, 60.0) == 10 + 2 * 65 + LEASE_MARGIN + 60 + 65
    assert dlq_message_seconds(retry, 65.0, 0.0) < dlq_message_seconds(retry, 65.0, 60.0)


@pytest.mark.parametrize(
    ("seconds", "per_message", "expected"),
    [(900, 270, 3), (820, 270, 3), (819.9, 270, 2), (280, 270, 1), (279, 270, 0), (5, 270, 0)],
)
def test_a_run_takes_what_its_time_fits(seconds: float, per_message: float, expected: int) -> None:
    assert run_capacity(seconds, per_message) == expected
    fits = run_capacity(seconds, per_message)
    if fits:
        assert fits * per_message + STOP_MARGIN_SECONDS <= seconds
    assert (fits + 1) * per_message + STOP_MARGIN_SECONDS > seconds


def test_the_capacity_needs_a_positive_message_time() -> None:
    with pytest.raises(ValueError, match="positive"):
        run_capacity(900, 0)


def test_processor_fn_fits_the_shipped_registry_several_times() -> None:
    assert shipped_worst_case() == 180.0  # every shipped profile: 5 s + 30 s calls
    assert run_capacity(processor_timeout(), shipped_worst_case()) == 4


def test_processor_fn_fits_one_message_of_the_slowest_provider_the_registry_accepts() -> None:
    """Defect: at 300 s, ProcessorFn could not finish one message of a provider the registry
    accepts (an upload needs no redeploy, so the Timeout must hold any of them); every run
    would hand its messages back and the DLQ would never drain."""
    assert run_capacity(OLD_TIMEOUT, accepted_worst_case()) == 0
    assert run_capacity(processor_timeout(), accepted_worst_case()) >= 1
    assert processor_timeout() <= 900  # Lambda's maximum


def test_processor_fn_has_no_reserved_concurrency_and_says_why() -> None:
    """Defect: ReservedConcurrentExecutions 1 fails to deploy on accounts whose quota is 10."""
    resource = load_template(ROOT / "template.yaml")["Resources"]["ProcessorFn"]
    assert "ReservedConcurrentExecutions" not in resource["Properties"]
    skips = {s["id"]: s["comment"] for s in resource["Metadata"]["checkov"]["skip"]}
    assert "concurren" in skips["CKV_AWS_115"]


class FakeSqs:
    """A DLQ with `count` messages; records each receive's size and visibility."""

    def __init__(self, count: int) -> None:
        self.waiting = [
            {"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": f'{{"invoiceId": "i{i}"}}'}
            for i in range(count)
        ]
        self.receives: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives.append(kwargs)
        taken = self.waiting[: kwargs["MaxNumberOfMessages"]]
        del self.waiting[: len(taken)]
        return {"Messages": taken}

    def delete_message(self, **kwargs: Any) -> None:
        self.deleted.append(kwargs["ReceiptHandle"])

    def change_message_visibility(self, **kwargs: Any) -> None:
        raise AssertionError("nothing is handed back when nothing is received beyond the time")


class SlowService:
    """Each message takes `seconds` of the run's clock, then is ISSUED."""

    def __init__(self, clock: list[float], seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds

    def process(self, invoice_id: str, **_: Any) -> Result:
        self.clock[0] -= self.seconds
        return Result(Outcome.ISSUED, invoice_id)


def run_with(seconds_left: float, per_message: float, taken: float, count: int) -> FakeSqs:
    clock = [seconds_left]
    sqs = FakeSqs(count)
    DlqReprocessor(
        sqs=sqs,
        dlq_url="dlq",
        service=SlowService(clock, taken),  # type: ignore[arg-type]
        parking=None,  # type: ignore[arg-type]
        per_message_seconds=lambda: per_message,
    ).run(50, lambda: clock[0])
    return sqs


def test_a_run_never_receives_more_than_its_time_fits_at_the_worst_case() -> None:
    """Defect: a run received ten at a time whatever its time left; the ones it could not
    start stayed hidden from the next run for the whole batch's visibility timeout."""
    sqs = run_with(900, 270, taken=270, count=20)
    assert [r["MaxNumberOfMessages"] for r in sqs.receives] == [3]
    assert sqs.receives[0]["VisibilityTimeout"] >= 3 * 270
    assert len(sqs.deleted) == 3 and len(sqs.waiting) == 17


def test_quick_messages_leave_time_for_more() -> None:
    sqs = run_with(900, 270, taken=2, count=20)
    assert len(sqs.deleted) == 20
    assert all(r["MaxNumberOfMessages"] <= 3 for r in sqs.receives)


def test_a_run_that_cannot_fit_one_message_takes_none_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sqs = run_with(200, 270, taken=1, count=5)
    assert sqs.receives == []
    assert "dlq run cannot fit one message" in [r.getMessage() for r in caplog.records]
