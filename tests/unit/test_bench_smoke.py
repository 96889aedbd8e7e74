"""Every benchmark section runs with tiny iteration counts and yields well-formed rows.

No timing is asserted: the figures are for `make bench` to print.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cold_start, cost, emit_path, run, signing
from bench.core import Context, Row, machine
from bench.timing import time_per_call

pytestmark = pytest.mark.unit


def _check(rows: list[Row]) -> None:
    assert rows
    for row in rows:
        assert row.metric and row.value
        assert row.ok in (True, False, None)


def test_emit_path_section() -> None:
    ctx = Context(quick=True)
    rows = emit_path.rows(ctx)
    _check(rows)
    assert {"emit_path_seconds", "botocore_call_seconds", "xmlschema_over_lxml"} <= set(
        ctx.measured
    )
    assert any("ratio" in r.metric for r in rows)


def test_emit_once_builds_a_valid_document() -> None:
    document = emit_path.emit_once(emit_path.sample_body())
    assert document.tag.endswith("GerarNfseEnvio")
    assert emit_path.xmlschema_validator().is_valid(document)


def test_signing_section() -> None:
    ctx = Context(quick=True)
    rows = signing.rows(ctx)
    _check(rows)
    assert "sign_seconds" in ctx.measured
    assert any("floor" in r.metric for r in rows)


def test_cold_start_section() -> None:
    ctx = Context(quick=True)
    rows = cold_start.rows(ctx)
    _check(rows)
    assert ctx.measured["cold_start_floor_seconds"] > 0
    assert rows[0].metric.startswith("floor")


def test_cost_section_uses_the_measurements() -> None:
    ctx = Context(quick=True, measured={"emit_path_seconds": 1e-4, "botocore_call_seconds": 3e-4})
    rows = cost.rows(ctx)
    _check(rows)
    assert sum("invoices/month" in r.metric for r in rows) == len(cost.DEFAULT_VOLUMES)


def test_runner_renders_markdown(tmp_path: Path) -> None:
    # The worker and e2e sections start the local stack: tests/e2e/test_bench_sections.py.
    results = run.run(["cost"], quick=True, echo=False)
    assert [s.key for s, _ in results] == ["cost"]
    placeholder = run.placeholder("later", "plug it")(Context(quick=True))
    assert placeholder[0].value == "not measured yet"
    text = run.markdown(results, machine())
    assert "## Machine" in text and "| CPU |" in text and "5. Cost model" in text
    keys = [s.key for s in run.SECTIONS()]
    assert keys == ["emit", "signing", "cold_start", "worker", "e2e", "cost"]
    out = tmp_path / "performance.md"
    assert run.main(["--only", "cost", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Performance and cost")


def test_time_per_call_counts_calls() -> None:
    calls: list[int] = []
    timing = time_per_call(lambda: calls.append(1), number=3, repeats=2, warmup=1)
    assert len(calls) == 7
    assert timing.best <= timing.median
