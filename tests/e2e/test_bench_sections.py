"""The worker (section 3) and end-to-end (section 4) benchmarks run with tiny counts.

Each starts its own embedded stack, so they run in a child process: the session's LocalStack
(tests/e2e/conftest.py) shares moto's process-wide backends. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json
from bench import e2e, worker
from bench.core import Context

ctx = Context(quick=True)
rows = worker.rows(ctx) + e2e.rows(ctx)
print(json.dumps({
    "rows": [[r.metric, r.value, r.ok] for r in rows],
    "measured": ctx.measured,
    "notes": ctx.notes,
}))
"""


@pytest.fixture(scope="module")
def quick_run() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_worker_section_measures_every_concurrency(quick_run: dict[str, Any]) -> None:
    metrics = [metric for metric, _value, _ok in quick_run["rows"]]
    for concurrency in (1, 8, 32):
        assert f"c={concurrency}: invoices/s (ideal {concurrency * 10})" in metrics
        assert f"c={concurrency}: worker peak RSS (VmHWM)" in metrics
    measured = quick_run["measured"]
    assert measured["worker_invoices_per_second"] > 0
    assert 0 < measured["worker_peak_rss_mb"] < 4096
    assert "What bounds it" in quick_run["notes"]["worker"]
    assert "worker process" in quick_run["notes"]["worker"]


def test_e2e_section_issues_every_invoice(quick_run: dict[str, Any]) -> None:
    rows = {metric: (value, ok) for metric, value, ok in quick_run["rows"]}
    value, ok = rows["GET per invoice at the end: ISSUED / total, round trip p50"]
    assert ok is True, value
    measured = quick_run["measured"]
    assert measured["e2e_invoices_per_second"] > 0
    assert 0 < measured["e2e_p50_seconds"] <= measured["e2e_p99_seconds"]
    assert "EmitFn" in quick_run["notes"]["e2e"]
