"""bench/suite_time.py: the README's make-test figure comes from a measured run."""

from __future__ import annotations

import datetime as dt

import pytest

from bench import suite_time
from bench.suite_time import MARKERS, SuiteRun, parse_summary, rewrite, sentence

pytestmark = pytest.mark.unit

OUTPUT = """
........ [100%]
---------- coverage: platform linux, python 3.12.1-final-0 ----------
TOTAL   10943   1676   2604    304    83%
================= slowest 15 durations =================
12.00s call tests/e2e/test_demo.py::test_demo
====== 1475 passed, 2 skipped, 41 warnings in 331.52s (0:05:31) ======
"""


def test_the_summary_line_gives_pytests_seconds_and_counts() -> None:
    seconds, counts = parse_summary(OUTPUT)
    assert seconds == pytest.approx(331.52)
    assert counts == {"passed": 1475, "skipped": 2}


def test_a_failed_run_is_not_written() -> None:
    _, counts = parse_summary("=== 3 failed, 10 passed in 12.00s ===")
    run = SuiteRun(60.0, 12.0, counts, "4", 2, dt.date(2026, 12, 1))
    assert not run.passed


def test_output_without_a_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="no pytest summary"):
        parse_summary("make: *** [Makefile:22: test] Error 2")


def test_the_readme_block_is_replaced_and_nothing_else() -> None:
    start, end = MARKERS
    readme = f"# T\n\nbefore\n{start}\nold figure\n{end}\nafter\n"
    run = SuiteRun(331.5, 320.0, {"passed": 1475}, "4", 2, dt.date(2026, 12, 1))
    written = rewrite(readme, sentence(run))
    assert written.startswith("# T\n\nbefore\n")
    assert written.endswith("\nafter\n")
    assert "old figure" not in written
    assert (
        "1,475 tests in 5 min 32 s of wall time (4 test processes on 2 cores, 2026-12-01" in written
    )


def test_a_readme_without_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="make-test-time"):
        rewrite("# T\n", "x")


def test_the_readme_has_the_block_written_by_the_command() -> None:
    text = suite_time.README.read_text(encoding="utf-8")
    start, end = MARKERS
    block = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert block.startswith("`make test` ran ")
    assert block.endswith("written by `python -m bench.suite_time`).")


def test_the_quiet_summary_line_of_make_test_is_read() -> None:
    seconds, counts = parse_summary("x\n1 failed, 1488 passed, 41 warnings in 288.19s (0:04:48)\n")
    assert seconds == pytest.approx(288.19)
    assert counts == {"failed": 1, "passed": 1488}
