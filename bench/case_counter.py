"""pytest plugin: what each test ran, as JSON, for pages that state counts (bench/reliability.py).

    python -m pytest -p bench.case_counter --case-counts=cases.json tests/e2e/test_auth_matrix.py
    python -m pytest -p bench.case_counter --case-counts=cases.json --hypothesis-only tests/unit

Per test (node id): its file, outcome (passed, failed, skipped, error), the call's duration, and
for a Hypothesis test (schemathesis's included) the test cases its engine ran, by phase and
status, from Hypothesis's own statistics (what `--hypothesis-show-statistics` prints), plus the
explicit `@example`s, which run before the engine and are not in those statistics.
`--hypothesis-only` deselects every test that is not a Hypothesis test.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import is_hypothesis_test
from hypothesis.statistics import collector

# Statuses Hypothesis gives a test case: the test body ran to the end (valid) or failed
# (interesting); invalid and overrun cases were discarded (assume(), filters, too much data).
RAN = ("valid", "interesting")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("case-counts", "per-test counts as JSON (bench.case_counter)")
    group.addoption("--case-counts", metavar="PATH", default=None, help="write the JSON here")
    group.addoption(
        "--hypothesis-only",
        action="store_true",
        default=False,
        help="deselect every test that is not a Hypothesis test",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--case-counts")
    if path:
        config.pluginmanager.register(CaseCounter(Path(path)), "case-counter")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--hypothesis-only"):
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if _is_hypothesis(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _function(item: pytest.Item) -> object:
    """The test function of an item (None for items that are not functions)."""
    return item.obj if isinstance(item, pytest.Function) else None


def _is_hypothesis(item: pytest.Item) -> bool:
    return bool(is_hypothesis_test(_function(item)))


def phase_counts(stats: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Phase -> status -> test cases, from one Hypothesis statistics dict."""
    out: dict[str, dict[str, int]] = {}
    for key, value in stats.items():
        if key.endswith("-phase") and isinstance(value, Mapping):
            statuses = Counter(str(case["status"]) for case in value.get("test-cases", []))
            if statuses:
                out[key.removesuffix("-phase")] = dict(statuses)
    return out


class CaseCounter:
    """Collects per-test records during the session and writes them at its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.began = time.monotonic()

    def _record(self, nodeid: str, location: tuple[str, int | None, str]) -> dict[str, Any]:
        # schemathesis gives every API operation of a test its own item under one node id
        # (`test_raw` twice); the location's name tells them apart (`test_raw[GET /x]`).
        file = nodeid.split("::", 1)[0]
        key = f"{file}::{location[2]}" if location[2] else nodeid
        return self.tests.setdefault(
            key, {"file": file, "outcome": "", "seconds": 0.0, "hypothesis": None}
        )

    # Innermost wrapper (trylast): the statistics collector set here is the one in force when
    # Hypothesis reports; the value it replaces (Hypothesis's own plugin's) is called too.
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        if not _is_hypothesis(item):
            yield
            return
        record = self._record(item.nodeid, item.location)
        counts: dict[str, Any] = {
            "runs": 0,
            "phases": {},
            "explicit": len(getattr(_function(item), "hypothesis_explicit_examples", ()) or ()),
            "stoppedBecause": [],
        }
        record["hypothesis"] = counts
        # Typed by Hypothesis as a variable holding None; it holds a callback while pytest runs.
        statistics: Any = collector
        outer: Callable[[Any], None] | None = statistics.value

        def note(stats: Any) -> None:
            counts["runs"] += 1
            for phase, statuses in phase_counts(stats).items():
                merged = Counter(counts["phases"].get(phase, {}))
                merged.update(statuses)
                counts["phases"][phase] = dict(merged)
            if stats.get("stopped-because"):
                counts["stoppedBecause"].append(str(stats["stopped-because"]))
            if outer is not None:
                outer(stats)

        with statistics.with_value(note):
            yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self._record(report.nodeid, report.location)
        if report.when == "call":
            record["seconds"] = round(report.duration, 4)
            record["outcome"] = "skipped" if report.skipped else report.outcome
        elif report.failed:  # setup or teardown
            record["outcome"] = "error"
        elif report.skipped and not record["outcome"]:
            record["outcome"] = "skipped"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "exitStatus": int(exitstatus),
            "seconds": round(time.monotonic() - self.began, 2),
            "tests": self.tests,
        }
        self.path.write_text(json.dumps(document, indent=2), encoding="utf-8")
