"""The worker's writable directories: checked before the loop, and a heartbeat that cannot be
written never stops the loop (it used to raise PermissionError out of Consumer.run)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from adapters_service.consumer import Consumer, Received, Verdict
from adapters_service.scratch import not_writable, writable_dirs, write_problem

pytestmark = pytest.mark.unit


def test_the_heartbeat_directory_and_tmpdir_are_the_dirs_checked() -> None:
    dirs = writable_dirs("/scratch/worker.heartbeat", {"TMPDIR": "/scratch"})
    assert dirs == [Path("/scratch")]
    assert writable_dirs("", {"TMPDIR": "/t"}) == [Path("/t")]
    assert writable_dirs("/a/hb", {}) == [Path("/a")]


def test_a_writable_directory_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    assert write_problem(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_or_a_file_is_a_problem_named_by_its_path(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    problems = not_writable([tmp_path / "missing", a_file, tmp_path])
    assert len(problems) == 2
    assert problems[0].startswith(f"{tmp_path / 'missing'}: ")
    assert problems[1].startswith(f"{a_file}: ")


class _StopAfterPolls:
    """An SQS client whose queue is empty; it stops the consumer after some polls."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.received = 0
        self.consumer: Consumer | None = None

    def receive_message(self, **_: Any) -> dict[str, Any]:
        self.received += 1
        if self.received >= self.polls and self.consumer is not None:
            self.consumer.stop()
        return {"Messages": []}


def _never(message: Received) -> Verdict:
    raise AssertionError("the queue is empty")


def test_a_heartbeat_that_cannot_be_written_never_stops_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = _StopAfterPolls(polls=3)
    consumer = Consumer(
        sqs=sqs,
        queue_url="unit",
        handler=_never,
        concurrency=1,
        wait_seconds=0,
        heartbeat_file=tmp_path / "missing-dir" / "worker.heartbeat",
    )
    sqs.consumer = consumer
    with caplog.at_level(logging.ERROR, logger="adapters_service.consumer"):
        consumer.run()
    assert sqs.received == 3  # it kept polling after each failed beat
    failures = [r for r in caplog.records if r.getMessage().startswith("heartbeat not written")]
    assert len(failures) == 1  # said once, not at every poll


def test_the_heartbeat_is_written_again_once_it_can_be(tmp_path: Path) -> None:
    heartbeat = tmp_path / "later" / "worker.heartbeat"
    sqs = _StopAfterPolls(polls=2)
    consumer = Consumer(
        sqs=sqs, queue_url="unit", handler=_never, concurrency=1, heartbeat_file=heartbeat
    )
    sqs.consumer = consumer
    consumer._beat()
    assert not heartbeat.exists()
    heartbeat.parent.mkdir()
    consumer.run()
    assert heartbeat.exists()
