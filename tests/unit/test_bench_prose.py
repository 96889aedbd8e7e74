"""No number in docs/performance.md's prose is typed by hand: each comes from the run.

Every section's text is rendered twice, from two sets of fake measurements that differ in every
figure, with the constants the text may quote (latency, thread counts, the cost model's prices,
sizes and targets) changed as well. A number that stands unchanged at the same place in both
texts came from neither: the test names it. `bench/prose.py` says what counts as prose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from bench import cold_start, cost, e2e, emit_path, run, worker
from bench.core import Row
from bench.prose import numbers, prose, unchanged
from bench.worker import Point

pytestmark = pytest.mark.unit


def _section_numbers() -> set[str]:
    """References to the page's own sections ("section 3"), by their titles."""
    return {s.title.split(".", 1)[0] for s in run.SECTIONS()}


def typed(render: Callable[[str], str], allowed: set[str] | None = None) -> list[str]:
    """The numbers `render("a")` and `render("b")` share, place for place, beyond `allowed`."""
    return [n for n in unchanged(render("a"), render("b")) if n not in (allowed or set())]


@pytest.fixture
def patch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, dict[Any, Any]], None]]:
    """patch(variant, {(module, name): value}): constants for variant "b" only."""

    def apply(variant: str, values: dict[Any, Any]) -> None:
        if variant == "b":
            for (module, name), value in values.items():
                monkeypatch.setattr(module, name, value)

    yield apply


# -------------------------------------------------------------------------- sections ----
def emit_text(variant: str) -> str:
    a = variant == "a"
    return emit_path.note(
        ratio=76.4 if a else 51.2,
        compile_xmlschema=0.1073 if a else 0.0911,
        compile_lxml=0.00189 if a else 0.00247,
        emit_path=118.6e-6 if a else 141.3e-6,
        botocore_call=271.9e-6 if a else 233.4e-6,
    )


def cold_start_text(variant: str) -> str:
    a = variant == "a"
    median = {
        "floor": 0.305 if a else 0.287,
        "EmitFn": 0.446 if a else 0.403,
        "GetFn": 0.308 if a else 0.301,
        "ProcessorFn": 0.463 if a else 0.452,
        "EmitFn without .pyc": 1.38 if a else 1.19,
    }
    floor_imports = {"boto3": 900, "lxml.etree": 3000}
    emit_imports = {
        **floor_imports,
        "pydantic": 26100 if a else 22300,
        "pydantic_core": 12400 if a else 9700,
        "annotated_types": 7300 if a else 5100,
        "typing_inspection": 900 if a else 1300,
        cold_start.REQUEST_MODELS: 9800 if a else 7400,
        "nfse_core.xml.builder": 6200 if a else 4900,
        "ulid": 3700 if a else 2300,
    }
    return cold_start.findings(
        median,
        emit_imports=emit_imports,
        floor_imports=floor_imports,
        xsd_compile=0.00189 if a else 0.00247,
    )


def _point(concurrency: int, scale: float, duplicates: int) -> Point:
    return Point(
        concurrency=concurrency,
        invoices=int(6 * concurrency * scale),
        seconds=3.21 * scale * concurrency**0.5,
        startup_seconds=0.61 * scale,
        peak_rss_mb=98.0 * scale,
        worker_cpu_per_invoice=0.0265 * scale,
        host_cpu_per_invoice=0.045 * scale,
        issued=int(6 * concurrency * scale),
        duplicates=duplicates,
        host_cpu_by_server={"moto": 0.0462 * scale, "simulator": 0.0031 * scale},
    )


def worker_text(variant: str) -> str:
    a = variant == "a"
    scale = 1.0 if a else 1.37
    top = 32 if a else 24  # the highest concurrency is a parameter: it changes too
    points = [_point(c, scale, 2 if a else 3) for c in (1, 8, top)]
    best = points[-1]
    total = best.worker_cpu_per_invoice + best.host_cpu_per_invoice
    return worker._notes(points, "profile notes", total, 2 if a else 4)


def e2e_text(variant: str) -> str:
    a = variant == "a"
    return e2e.note(
        count=1000 if a else 400,
        emit_busy=111.2 if a else 52.3,
        emit_calls=1002 if a else 402,
        post_window=112.1 if a else 57.7,
        p50=1.089 if a else 0.731,
        post_p50=0.880 if a else 0.517,
        host_cpu=0.1095 if a else 0.0971,
        cpu_by_server={"gateway": 0.0132, "moto": 0.077}
        if a
        else {"gateway": 0.011, "moto": 0.061},
        worker_cpu=0.0236 if a else 0.0198,
        function_cpu=0.0121 if a else 0.0154,
        worker_rate=18.4 if a else 13.1,
        worker_concurrency=32 if a else 24,
        profiled_rate=4.7 if a else 3.3,
        profile_text="profile text",
    )


MEASURED = {
    "a": {
        "emit_path_seconds": 118.6e-6,
        "botocore_call_seconds": 271.9e-6,
        "cold_start_emit_seconds": 0.446,
        "worker_invoices_per_second": 18.4,
    },
    "b": {
        "emit_path_seconds": 141.3e-6,
        "botocore_call_seconds": 233.4e-6,
        "cold_start_emit_seconds": 0.403,
        "worker_invoices_per_second": 13.1,
    },
}


def _prices(scale: float) -> dict[str, Any]:
    def scaled(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scaled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scaled(v) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value * scale
        return value

    prices: dict[str, Any] = cost.load_prices()
    return {
        k: v if k.startswith("_") or isinstance(v, str) else scaled(v) for k, v in prices.items()
    }


def cost_inputs(variant: str) -> tuple[dict[str, Any], cost.Sizing, cost.Workload]:
    sizing = cost.Sizing.from_files()
    workload = cost.Workload()
    if variant == "b":
        sizing = replace(
            sizing,
            emit_memory_mb=1280,
            get_memory_mb=320,
            worker_vcpu=0.5,
            worker_min_tasks=2,
            aurora_min_acu=1.0,
            happy_path_states=2,
            alarms=sizing.alarms + 3,
            kms_keys=2,
        )
        workload = replace(
            workload,
            s3_puts_per_invoice=4,
            s3_gets_per_invoice=3,
            s3_document_bytes=17 * 1024,
            emit_io_ms=48.0,
            companies=140,
            waf_rules=7,
            express_memory_mb=128,
            express_duration_ms=200.0,
            idempotency_share=0.5,
            issued_item_extra_bytes=3000,
            custom_metrics=19,
            log_bytes={**workload.log_bytes, "Step Functions Express, level ALL": 11 * 310},
        )
    workload = cost.workload_from_measurements(workload, MEASURED[variant])
    return _prices(1.0 if variant == "a" else 1.23), sizing, sizing.applied_to(workload)


EMIT_CONSTANTS = {(emit_path, "EMIT_AWS_CALLS"): 9}
WORKER_CONSTANTS = {(worker, "LATENCY_SECONDS"): 0.04}
E2E_CONSTANTS = {
    (e2e, "POSTERS"): 6,
    (e2e, "WORKER_CONCURRENCY"): 12,
    (e2e, "LATENCY_SECONDS"): 0.04,
}
COST_CONSTANTS = {
    (cost, "TARGET_PER_MILLION"): 30.0,
    (cost, "REFERENCE_VOLUME"): 2_000_000,
    (cost, "DEFAULT_VOLUMES"): (20_000, 2_000_000, 20_000_000),
    (cost, "RETENTION_YEARS"): 7,
    (cost, "IA_MINIMUM_OBJECT_KB"): 96,
    (cost, "FULL_VCPU_MB"): 1792,
    (cost, "MEMORY_SIZES"): (384, 512, 1024, 1792),
    (cost, "EMIT_AWS_CALLS"): 9,
}


def cost_text(variant: str) -> str:
    """Section 5's text as the page has it: the model's output fenced, then the findings."""
    return cost.note(*cost_inputs(variant), worker_measured=True)


def cost_printed(variant: str) -> set[str]:
    """The numbers the model prints in its own output (the fenced block on the page)."""
    prices, sizing, workload = cost_inputs(variant)
    return set(numbers(cost.report(cost.DEFAULT_VOLUMES, prices, sizing, workload)[0]))


# ----------------------------------------------------------------------------- tests ----
def test_emit_path_prose(patch: Callable[[str, dict[Any, Any]], None]) -> None:
    def render(variant: str) -> str:
        patch(variant, EMIT_CONSTANTS)
        return emit_text(variant)

    assert typed(render) == []


def test_cold_start_prose() -> None:
    assert typed(cold_start_text, _section_numbers()) == []


def test_worker_prose(patch: Callable[[str, dict[Any, Any]], None]) -> None:
    def render(variant: str) -> str:
        patch(variant, WORKER_CONSTANTS)
        return worker_text(variant)

    assert typed(render) == []


def test_e2e_prose(patch: Callable[[str, dict[Any, Any]], None]) -> None:
    def render(variant: str) -> str:
        patch(variant, E2E_CONSTANTS)
        return e2e_text(variant)

    assert typed(render, _section_numbers()) == []


def test_cost_prose(patch: Callable[[str, dict[Any, Any]], None]) -> None:
    def render(variant: str) -> str:
        patch(variant, COST_CONSTANTS)
        return cost_text(variant)

    # The model's own printed output (its line items and tables) may be quoted as it is.
    assert typed(render, cost_printed("a")) == []


def test_the_whole_page_prose(patch: Callable[[str, dict[Any, Any]], None]) -> None:
    """The page as bench/run.py writes it: the header and every section's text."""

    def render(variant: str) -> str:
        patch(variant, EMIT_CONSTANTS | WORKER_CONSTANTS | E2E_CONSTANTS | COST_CONSTANTS)
        texts = {
            "emit": emit_text(variant),
            "cold_start": cold_start_text(variant),
            "worker": worker_text(variant),
            "e2e": e2e_text(variant),
            "cost": cost_text(variant),
        }
        results = [(s, [Row("metric", "1")]) for s in run.SECTIONS()]
        info = {"cores": "2" if variant == "a" else "4"}
        return run.markdown(results, info, texts)

    assert typed(render, _section_numbers() | cost_printed("a")) == []


# ---------------------------------------------------------------- the detector itself ----
def test_a_typed_number_is_caught() -> None:
    def render(variant: str) -> str:
        measured = "4.2" if variant == "a" else "5.7"
        return f"Measured {measured} ms, about 60 ms of which is pydantic.\n\n| table | 9 |"

    assert typed(render) == ["60"]


def test_prose_leaves_out_tables_headings_and_fenced_blocks() -> None:
    page = (
        "# Title 1\n\ntext 12 and 76x and 99% and $25\n\n| a | 3 |\n```text\n4\n```\nS3 p50 5xx #6"
    )
    assert prose(page).split() == ["text", "12", "and", "76x", "and", "99%", "and", "$25", "S3",
                                   "p50", "5xx", "#6"]  # fmt: skip
    assert numbers(prose(page)) == ["12", "76", "99", "25"]


def test_the_runner_section_titles_quote_their_parameters() -> None:
    titles = {s.key: s.title for s in run.SECTIONS()}
    assert f"simulator at {worker.LATENCY_SECONDS * 1e3:.0f} ms" in titles["worker"]
