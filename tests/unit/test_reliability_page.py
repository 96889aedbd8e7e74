"""docs/reliability.md is written from the runs: bench/reliability.py and bench/case_counter.py.

The page is rendered from fake runs: every number of its prose must change with them (as in
test_bench_prose.py), whatever invariants and fault kinds the chaos report holds must all be on
it, and a failed run must show on the page and in the exit status. The pytest plugin is run for
real on a small generated test module, so its counts are Hypothesis's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import reliability
from bench.prose import unchanged
from bench.reliability import Command, Examples, Record, SuiteResult

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def chaos_report(variant: str) -> dict[str, Any]:
    a = variant == "a"
    return {
        "invoices": 2000 if a else 300,
        "seed": 7 if a else 11,
        "posted": 2000 if a else 300,
        "accepted": 1998 if a else 297,
        "refused": 2 if a else 3,
        "abandoned": 5 if a else 2,
        "abandonedFound": 4 if a else 2,
        "emitDeaths": 31 if a else 7,
        "emitUnavailable": 3 if a else 4,
        "workers": 2 if a else 3,
        "sweeps": {"examined": 12, "redriven": 3, "stuck": 0}
        if a
        else {"examined": 5, "redriven": 2},
        "sweeperRuns": 14 if a else 6,
        "issued": 1994 if a else 291,
        "failed": 4 if a else 6,
        "failedCodes": {"PROVIDER_UNAVAILABLE": 4 if a else 6},
        "stuck": [],
        "lost": 0,
        "duplicated": 0,
        "mismatches": 0,
        "rpsReused": 0,
        "backwardMoves": 0,
        "simulatorIssued": 1994 if a else 291,
        "faults": {"http_500": 442, "soap_fault": 373} if a else {"http_500": 61, "soap_fault": 52},
        "requestsByOperation": {"GerarNfse": 2760, "ConsultarNfsePorRps": 1320}
        if a
        else {"GerarNfse": 410, "ConsultarNfsePorRps": 190},
        "kills": 6 if a else 3,
        "dlq": {"issued": 5, "failed": 4} if a else {"issued": 2, "failed": 6},
        "dlqRuns": 9 if a else 4,
        "samples": 230 if a else 41,
        "ledgerSamples": 229 if a else 40,
        "transitionsSeen": 993 if a else 151,
        "ledger": "PostgreSQL",
        "wallSeconds": 340.21 if a else 61.37,
        "throughput": 5.87 if a else 4.84,
        "violations": [],
        "ok": True,
    } | ({} if a else {"invariants": {f"invariant {i}": 0 for i in range(6)}})


def records(variant: str) -> list[Record]:
    a = variant == "a"

    def hyp(ran: int, discarded: int, explicit: int) -> Examples:
        return Examples(ran, discarded, explicit)

    return [
        Record("tests/unit/test_p.py::test_one", "properties", "tests/unit/test_p.py", "passed",
               0.41 if a else 0.93, hyp(300 if a else 70, 12 if a else 5, 2 if a else 3)),
        Record("tests/unit/test_p.py::test_two", "properties", "tests/unit/test_p.py", "passed",
               0.22 if a else 0.57, hyp(500 if a else 90, 0 if a else 4, 0 if a else 1)),
        Record("tests/e2e/test_schemathesis.py::test_raw[POST /x]", "hostile",
               "tests/e2e/test_schemathesis.py", "passed", 11.3 if a else 4.1,
               hyp(100 if a else 30, 38 if a else 9, 15 if a else 6)),
        Record("tests/e2e/test_schemathesis.py::test_regression", "hostile",
               "tests/e2e/test_schemathesis.py", "passed", 0.01 if a else 0.02),
        *(
            Record(f"tests/e2e/test_auth_matrix.py::test_{i}", "hostile",
                   "tests/e2e/test_auth_matrix.py", "passed", 0.3 if a else 0.8)
            for i in range(44 if a else 13)
        ),
        *(
            Record(f"tests/integration/test_provider_answer_safety.py::test_{i}", "hostile",
                   "tests/integration/test_provider_answer_safety.py", "passed",
                   0.11 if a else 0.27 + i / 100)
            for i in range(34 if a else 9)
        ),
    ]  # fmt: skip


def commands(variant: str) -> list[Command]:
    a = variant == "a"
    work = reliability.WORK
    return [
        Command("chaos", tuple(reliability.chaos_argv(2000 if a else 300, 6 if a else 3, 1, work)),
                355.2 if a else 80.4, 0),
        Command("properties", tuple(reliability.pytest_argv("properties", work)),
                91.3 if a else 40.8, 0),
        Command("hostile", tuple(reliability.pytest_argv("hostile", work)),
                129.9 if a else 77.1, 0),
    ]  # fmt: skip


def render(
    variant: str,
    report: dict[str, Any] | None = None,
    recs: Sequence[Record] | None = None,
) -> str:
    a = variant == "a"
    found = list(records(variant) if recs is None else recs)
    return reliability.markdown(
        info={"cores": "2" if a else "8", "Python": "3.12.1" if a else "3.13.0"},
        generator=["python", "-m", "bench.reliability", "--invoices", "2000" if a else "300"],
        commands=commands(variant),
        chaos=chaos_report(variant) if report is None else report,
        planned_kills=6 if a else 3,
        # The suites are data too: "b" counts three of them.
        results=[reliability.select(suite, found) for suite in reliability.SUITES[: 4 if a else 3]],
        summaries={"tests/unit/test_p.py": "Properties of the rules."},
        total_seconds=580.4 if a else 201.9,
    )


# ----------------------------------------------------------------------------- tests ----
def test_every_number_in_the_prose_comes_from_the_runs() -> None:
    assert unchanged(render("a"), render("b")) == []


def test_the_page_carries_the_counts() -> None:
    page = render("a")
    assert page.startswith("# Reliability\n")
    assert "Generated by `make reliability`" in page
    assert "| cores | 2 |" in page and "| Python | 3.12.1 |" in page
    assert "`python -m nfse_local.chaos --invoices=2000 --kills=6 --seed=1" in page
    assert "All 5 invariants hold." in page
    assert "5 given up by their client, of which 4 recorded anyway" in page
    assert (
        "Worker processes (of 2 worker tasks) were killed (SIGKILL) and restarted 6 times" in page
    )
    assert "EmitFn died mid-request 31 times and answered SERVICE_UNAVAILABLE 3 times." in page
    assert "SweeperFn ran 14 times: examined 12, redriven 3." in page
    assert "| http_500 | 442 |" in page and "| total | 815 |" in page
    # properties: 300 + 2 + 500 examples; schemathesis 100 + 15 + 1; auth 44; provider 34
    assert "| Hypothesis properties | 2 | 802 |" in page
    assert "| schemathesis against api/openapi.yaml | 2 | 116 |" in page
    assert "| auth matrix over HTTP | 44 | 44 |" in page
    assert "| hostile provider answers | 34 | 34 |" in page
    assert "4 suites, 82 tests, 996 cases run; every test passed." in page


def test_invariants_and_faults_are_whatever_the_report_holds() -> None:
    report = chaos_report("a")
    report["invariants"] = {
        "nothing lost": 0,
        "one NFS-e per RPS": 0,
        "a new invariant of the lead's": 2,
        "a verdict": True,
        "a list of violations": ["one", "two", "three"],
    }
    report["faults"] = {**report["faults"], "a_new_fault_kind": 17}
    report["aNewFigure"] = 42
    report["violations"] = ["inv-1: broke", "inv-2: broke"]
    report["ok"] = False
    page = render("a", report=report)
    assert "| a new invariant of the lead's | 2 | BROKEN |" in page
    assert "| nothing lost | 0 | holds |" in page
    assert "| a verdict | 0 | holds |" in page
    assert "| a list of violations | 3 | BROKEN |" in page
    assert "**2 of 5 invariants broken**, 2 violations" in page
    assert "- inv-1: broke" in page
    assert "| a_new_fault_kind | 17 |" in page and "| total | 832 |" in page
    assert "| aNewFigure | 42 |" in page


def test_failed_and_skipped_tests_show_on_the_page() -> None:
    found = records("a")
    found[0] = Record(found[0].name, "properties", found[0].file, "failed", 1.0, found[0].examples)
    found[-1] = Record(found[-1].name, "hostile", found[-1].file, "skipped", 0.0)
    page = render("a", recs=found)
    assert "**2 tests did not pass**" in page
    assert f"- `{found[0].name}`: failed" in page
    assert f"- `{found[-1].name}`: skipped" in page
    results = [reliability.select(s, found) for s in reliability.SUITES]
    assert [r.ok for r in results] == [False, True, True, False]


def test_a_chaos_run_without_a_report_says_so() -> None:
    page = reliability.chaos_section(None, Command("chaos", ("x",), 3.0, 1), 6)
    assert "wrote no report (exit status 1)" in page


def test_generator_writes_the_page_and_fails_when_a_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() with the three commands replaced by writers of what they would leave behind."""
    monkeypatch.setattr(reliability, "WORK", tmp_path / "work")
    ran: list[str] = []

    def fake(name: str, argv: Sequence[str]) -> Command:
        ran.append(name)
        work = reliability.WORK
        if name == "chaos":
            report = chaos_report("a") | {"ok": False, "violations": ["x: stuck in EMITTED"]}
            (work / "chaos.json").write_text(json.dumps(report))
            return Command(name, tuple(argv), 1.0, 1)
        tests = {
            r.name: {"file": r.file, "outcome": r.outcome, "seconds": r.seconds,
                     "hypothesis": {"phases": {"generate": {"valid": r.examples.ran}},
                                    "explicit": r.examples.explicit} if r.examples else None}
            for r in records("a") if r.run == name
        }  # fmt: skip
        (work / f"{name}.json").write_text(json.dumps({"tests": tests}))
        return Command(name, tuple(argv), 2.0, 0)

    monkeypatch.setattr(reliability, "execute", fake)
    out = tmp_path / "reliability.md"
    assert reliability.main(["--invoices", "20", "--kills", "2", "--output", str(out)]) == 1
    assert ran == ["chaos", "properties", "hostile"]
    page = out.read_text(encoding="utf-8")
    assert "`python -m bench.reliability --invoices 20 --kills 2 --output" in page
    assert "- x: stuck in EMITTED" in page
    assert "| auth matrix over HTTP | 44 | 44 |" in page
    # The runs' records are kept: the same page again without running anything.
    monkeypatch.setattr(reliability, "execute", None)
    again = tmp_path / "again.md"
    assert reliability.main(["--render-only", "--output", str(again)]) == 1
    assert again.read_text(encoding="utf-8") == page


def test_the_make_target_passes_the_chaos_variables() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert (
        "reliability: $(STAMP)\n\t$(BIN)/python -m bench.reliability --invoices $(CHAOS_N) "
        "--kills $(CHAOS_KILLS) --seed $(CHAOS_SEED)\n"
    ) in makefile


# ------------------------------------------------------------------ the pytest plugin ----
PLUGIN_TARGET = """
import pytest
from hypothesis import example, given, settings, strategies as st


@settings(max_examples=7, database=None)
@example(0)
@given(st.integers())
def test_property(n):
    assert isinstance(n, int)


@settings(max_examples=5, database=None, derandomize=True)
@given(st.integers(0, 1000))
def test_property_with_discards(n):
    from hypothesis import assume
    assume(n % 4 == 0)


def test_plain():
    assert True


@pytest.mark.skip(reason="shown, not counted")
def test_skipped():
    pass
"""


def run_plugin(tmp_path: Path, *extra: str) -> dict[str, Any]:
    module = tmp_path / "test_target.py"
    module.write_text(textwrap.dedent(PLUGIN_TARGET), encoding="utf-8")
    out = tmp_path / "cases.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "bench.case_counter", f"--case-counts={out}",
         "-p", "no:cacheprovider", "-q", *extra, str(module)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def test_the_plugin_counts_what_hypothesis_ran(tmp_path: Path) -> None:
    document = run_plugin(tmp_path)
    tests = {name.rsplit("::", 1)[1]: data for name, data in document["tests"].items()}
    assert set(tests) == {"test_property", "test_property_with_discards", "test_plain",
                          "test_skipped"}  # fmt: skip
    assert tests["test_plain"]["outcome"] == "passed" and tests["test_plain"]["hypothesis"] is None
    assert tests["test_skipped"]["outcome"] == "skipped"
    prop = Examples.from_json(tests["test_property"]["hypothesis"])
    assert (prop.ran, prop.explicit) == (7, 1)
    discards = Examples.from_json(tests["test_property_with_discards"]["hypothesis"])
    assert discards.ran == 5 and discards.discarded > 0
    loaded = reliability.load_records(tmp_path / "cases.json", "properties")
    by_name = {r.name.rsplit("::", 1)[1]: r for r in loaded}
    assert by_name["test_property"].cases == 8
    assert by_name["test_plain"].cases == 1 and by_name["test_skipped"].cases == 0


def test_the_plugin_keeps_only_hypothesis_tests_when_asked(tmp_path: Path) -> None:
    document = run_plugin(tmp_path, "--hypothesis-only")
    names = {name.rsplit("::", 1)[1] for name in document["tests"]}
    assert names == {"test_property", "test_property_with_discards"}


def test_suite_results_count_cases_and_outcomes() -> None:
    result = SuiteResult(reliability.SUITES[0], records("a")[:2])
    assert result.cases == 802
    assert result.outcomes() == {"passed": 2}
    assert result.ok and result.longest is not None and result.longest.seconds == 0.41
    assert not SuiteResult(reliability.SUITES[0], []).ok
