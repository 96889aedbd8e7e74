"""`make reliability`: runs the chaos run and the hostile-input suites, writes docs/reliability.md.

    python -m bench.reliability --invoices 2000 --kills 6 --seed 1   # `make reliability`
    python -m bench.reliability --invoices 100 --kills 1 --output /tmp/reliability.md

Three commands, each in its own process, run one after the other:

- `python -m nfse_local.chaos ... --json`: invoices over HTTP through the embedded stack while the
  provider fails and the worker is SIGKILLed; its JSON report gives the invariants, the faults
  injected and every other figure of the run;
- pytest with bench/case_counter.py over the Hypothesis property tests (`--hypothesis-only`,
  under the thorough profile of tests/hypothesis_profiles.py), counting the examples Hypothesis
  ran;
- pytest with bench/case_counter.py over the hostile-input suites (schemathesis, the auth matrix,
  hostile provider answers; the thorough profile too), counting their cases.

Every figure on the page comes from those runs. The page is written even when a run fails (a
broken invariant, a failed test), so that the failure is on it; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import ROOT, machine

DOC = ROOT / "docs" / "reliability.md"
WORK = ROOT / ".local" / "reliability"
CASE_COUNTER = "bench.case_counter"
# The Hypothesis profile of the counted runs (tests/hypothesis_profiles.py): every property and
# schemathesis run with their full example counts, as `make fuzz` runs them.
HYPOTHESIS_PROFILE = "thorough"
# No test of these suites may pass by skipping: a skip is shown, and fails the run.
RAN = ("passed", "failed")


# ----------------------------------------------------------------------- the suites ----
@dataclass(frozen=True, slots=True)
class Suite:
    """A group of tests the page counts; `files` select records by file (prefix match)."""

    key: str
    title: str
    run: str  # the pytest run (PYTEST_RUNS key) that executes it
    files: tuple[str, ...]
    by_file: bool = False  # one line per test file in its detail table


PYTEST_RUNS: Mapping[str, tuple[str, ...]] = {
    # Every Hypothesis test of the unit and integration suites, whatever its file: a new
    # property test is counted without touching this list.
    "properties": ("--hypothesis-only", "tests/unit", "tests/integration"),
    "hostile": (
        "tests/e2e/test_schemathesis.py",
        "tests/e2e/test_auth_matrix.py",
        "tests/integration/test_provider_answer_safety.py",
    ),
}

SUITES: tuple[Suite, ...] = (
    Suite(
        "properties",
        "Hypothesis properties",
        "properties",
        ("tests/unit", "tests/integration"),
        by_file=True,
    ),
    Suite(
        "schemathesis",
        "schemathesis against api/openapi.yaml",
        "hostile",
        ("tests/e2e/test_schemathesis.py",),
    ),
    Suite("auth", "auth matrix over HTTP", "hostile", ("tests/e2e/test_auth_matrix.py",)),
    Suite(
        "provider",
        "hostile provider answers",
        "hostile",
        ("tests/integration/test_provider_answer_safety.py",),
    ),
)


# ------------------------------------------------------------------------- the data ----
@dataclass(frozen=True, slots=True)
class Command:
    """One command the generator ran: what, for how long, with which exit status."""

    name: str
    argv: tuple[str, ...]
    seconds: float
    returncode: int


@dataclass(frozen=True, slots=True)
class Examples:
    """What Hypothesis ran for one test: examples that ran to the end or failed, examples it
    discarded (assume(), filters, overruns), and explicit `@example`s."""

    ran: int
    discarded: int
    explicit: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Examples:
        ran = discarded = 0
        for statuses in data.get("phases", {}).values():
            for status, count in statuses.items():
                if status in ("valid", "interesting"):
                    ran += int(count)
                else:
                    discarded += int(count)
        return cls(ran, discarded, int(data.get("explicit", 0)))


@dataclass(frozen=True, slots=True)
class Record:
    """One test as bench/case_counter.py recorded it."""

    name: str
    run: str  # the PYTEST_RUNS key whose process ran it
    file: str
    outcome: str
    seconds: float
    examples: Examples | None = None

    @property
    def cases(self) -> int:
        """Cases run: a Hypothesis test's examples (explicit ones included), else the test."""
        if self.examples is not None:
            return self.examples.ran + self.examples.explicit
        return 1 if self.outcome in RAN else 0


def load_records(path: Path, run: str) -> list[Record]:
    if not path.is_file():
        return []
    document = json.loads(path.read_text(encoding="utf-8"))
    records = []
    for name, data in document.get("tests", {}).items():
        hyp = data.get("hypothesis")
        records.append(
            Record(
                name=name,
                run=run,
                file=str(data.get("file", "")),
                outcome=str(data.get("outcome") or "not run"),
                seconds=float(data.get("seconds", 0.0)),
                examples=Examples.from_json(hyp) if hyp else None,
            )
        )
    return records


@dataclass(frozen=True, slots=True)
class SuiteResult:
    suite: Suite
    records: list[Record] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(r.cases for r in self.records)

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.outcome] = counts.get(record.outcome, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return bool(self.records) and all(r.outcome == "passed" for r in self.records)

    @property
    def longest(self) -> Record | None:
        return max(self.records, key=lambda r: r.seconds, default=None)


def select(suite: Suite, records: Sequence[Record]) -> SuiteResult:
    mine = [r for r in records if r.run == suite.run and r.file.startswith(suite.files)]
    return SuiteResult(suite, mine)


def checkout() -> str:
    """The commit measured, and whether the tree had changes on top of it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head} with uncommitted changes" if dirty else head


def summary_line(path: Path) -> str:
    """The first paragraph of a test module's docstring, on one line: what its tests show."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    return " ".join(doc.split("\n\n", 1)[0].split())


# -------------------------------------------------------------------------- the page ----
def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _n(value: object) -> str:
    """A count with thousands separators; anything else as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pairs(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_n(v)}" for k, v in mapping.items()) or "none"


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{_n(count)} times")


def _seconds(value: float) -> str:
    return f"{value:,.1f} s"


def shown(argv: Sequence[str]) -> str:
    """A command line as a reader would type it: `python` for this interpreter, paths relative
    to the checkout."""
    words = ["python" if a == sys.executable else a.replace(f"{ROOT}/", "") for a in argv]
    return shlex.join(words)


# Until chaos's report carries "invariants" (name -> violations found), these are the counters
# it reports for each invariant of its docstring; a report with "invariants" is used as it is.
COUNTED_INVARIANTS: Mapping[str, str] = {
    "lost": "every accepted invoice ends ISSUED or FAILED: none lost or stuck",
    "duplicated": "the provider issued one NFS-e per ISSUED invoice and none for the others",
    "mismatches": "DynamoDB and the ledger agree row by row",
    "rpsReused": "no RPS number was handed out twice",
    "backwardMoves": "no status moved backwards (DynamoDB and the ledger, sampled)",
}


def invariants(report: Mapping[str, Any]) -> dict[str, int]:
    """Invariant -> violations found, from whatever the report holds."""
    given = report.get("invariants")
    if isinstance(given, Mapping):
        return {str(name): _count(value) for name, value in given.items()}
    return {text: _count(report[key]) for key, text in COUNTED_INVARIANTS.items() if key in report}


def _count(value: Any) -> int:
    """Violations, from a count, a list of them, a verdict (True: holds) or a mapping of those."""
    if isinstance(value, bool):
        return 0 if value else 1
    if isinstance(value, Mapping):  # {"violations": n, ...} or {"holds": bool}
        if "violations" in value:
            return _count(value["violations"])
        return 0 if value.get("holds", value.get("ok")) else 1
    if isinstance(value, list | tuple):
        return len(value)
    return int(value)


def _nonzero(mapping: Any) -> dict[str, Any]:
    return {k: v for k, v in (mapping or {}).items() if v}


def story(report: Mapping[str, Any], planned_kills: int, total_faults: int) -> str:
    """The chaos run told in a paragraph; a sentence whose figures the report lacks is left out
    (the table below the paragraph lists every figure the report holds, whatever they are)."""

    def get(key: str, default: Any = None) -> Any:
        return report.get(key, default)

    def has(*keys: str) -> bool:
        return all(key in report for key in keys)

    given_up = (
        f", {_n(get('abandoned'))} given up by their client, of which "
        f"{_n(get('abandonedFound', 0))} recorded anyway"
        if get("abandoned")
        else ""
    )
    workers = f" (of {_n(get('workers'))} worker tasks)" if has("workers") else ""
    para = [
        f"{_n(get('posted', 0))} invoices were POSTed over HTTP to the embedded stack as both "
        f"sample tenants ({_n(get('accepted', 0))} accepted, {_n(get('refused', 0))} "
        f"refused{given_up}), with the ledger on {get('ledger') or 'an unknown database'} and "
        f"seed {get('seed')}. Worker processes{workers} were killed (SIGKILL) and restarted "
        f"{_times(int(get('kills', 0)))} ({_n(planned_kills)} planned) while the provider "
        f"simulator injected {_n(total_faults)} faults (below)."
    ]
    if has("emitDeaths"):
        para.append(
            f"EmitFn died mid-request {_times(int(get('emitDeaths')))}"
            + (
                f" and answered SERVICE_UNAVAILABLE {_times(int(get('emitUnavailable')))}"
                if get("emitUnavailable")
                else ""
            )
            + "."
        )
    failed_codes = get("failedCodes") or {}
    para.append(
        f"At the end {_n(get('issued', 0))} invoices were ISSUED and {_n(get('failed', 0))} "
        f"FAILED{f' ({_pairs(failed_codes)})' if failed_codes else ''}; the provider holds "
        f"{_n(get('simulatorIssued', 0))} NFS-e."
    )
    if get("requestsByOperation"):
        requests: Mapping[str, Any] = get("requestsByOperation")
        para.append(
            f"It answered {_n(sum(int(v) for v in requests.values()))} SOAP requests: "
            f"{_pairs(requests)}."
        )
    for runs, outcomes, who, where in (
        ("dlqRuns", "dlq", "ProcessorFn", " on the DLQ"),
        ("sweeperRuns", "sweeps", "SweeperFn", ""),
    ):
        if has(runs):
            done = _nonzero(get(outcomes))
            para.append(
                f"{who} ran {_times(int(get(runs)))}{where}: "
                + (_pairs(done) if done else "it found nothing to do")
                + "."
            )
    if has("samples", "ledgerSamples", "transitionsSeen"):
        para.append(
            f"A sampler read every invoice's status in DynamoDB {_times(int(get('samples')))} "
            f"and in the ledger {_times(int(get('ledgerSamples')))} during the run, and saw "
            f"{_n(get('transitionsSeen'))} status changes."
        )
    if has("wallSeconds"):
        para.append(
            f"From the first POST to the last final status the run took "
            f"{_seconds(float(get('wallSeconds')))} ({get('throughput')} invoices/s; the stack's "
            "start-up is not counted, and the local gateway runs one EmitFn call at a time, see "
            "[performance.md](performance.md))."
        )
    return " ".join(para)


def chaos_section(report: Mapping[str, Any] | None, command: Command, planned_kills: int) -> str:
    lines = ["## 1. Chaos: the invariants under faults and SIGKILLs", ""]
    if not report:
        lines += [
            f"The chaos run wrote no report (exit status {command.returncode}); see its output.",
            "",
        ]
        return "\n".join(lines)
    faults: Mapping[str, Any] = report.get("faults", {})
    total_faults = sum(int(v) for v in faults.values())

    def get(key: str, default: Any = None) -> Any:
        return report.get(key, default)

    lines += [story(report, planned_kills, total_faults), ""]

    found = invariants(report)
    broken = [name for name, count in found.items() if count]
    violations: list[str] = list(get("violations") or [])
    if broken or violations or not get("ok", True):
        verdict = (
            f"**{len(broken)} of {len(found)} invariants broken**, {len(violations)} violations"
            " in all; the first ones:"
        )
    else:
        verdict = f"All {len(found)} invariants hold."
    lines += [
        "| invariant | violations | verdict |",
        "|---|---:|---|",
        *(
            f"| {_cell(name)} | {_n(count)} | {'BROKEN' if count else 'holds'} |"
            for name, count in found.items()
        ),
        "",
        verdict,
        "",
    ]
    if violations:
        lines += [*(f"- {_cell(v)}" for v in violations[:20]), ""]
    lines += [
        "Faults injected, by kind:",
        "",
        "| fault | count |",
        "|---|---:|",
        *(f"| {_cell(kind)} | {_n(int(n))} |" for kind, n in sorted(faults.items())),
        f"| total | {_n(total_faults)} |",
        "",
        "Every figure of the report (`--json`), as it came:",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, value in report.items():
        if isinstance(value, Mapping):
            text = _pairs(value)
        elif isinstance(value, list | tuple):
            text = f"{len(value)} entries"
        else:
            text = _n(value)
        lines.append(f"| {_cell(key)} | {_cell(text)} |")
    lines.append("")
    return "\n".join(lines)


def hostile_section(results: Sequence[SuiteResult], summaries: Mapping[str, str]) -> str:
    tests = sum(len(r.records) for r in results)
    cases = sum(r.cases for r in results)
    failing = sum(1 for r in results for rec in r.records if rec.outcome != "passed")
    lines = [
        "## 2. Hostile input",
        "",
        f"{len(results)} suites, {_n(tests)} tests, {_n(cases)} cases run; "
        + ("every test passed." if not failing else f"**{_n(failing)} tests did not pass**.")
        + " A Hypothesis test counts the examples its engine ran to the end (generated, replayed"
        " and shrunk) plus its explicit examples; any other test counts once. What a suite shows"
        " is the first paragraph of its test module's docstring, and holds only if every test"
        " passed.",
        "",
        "| suite | tests | cases run | outcome | longest test | what it shows |",
        "|---|---:|---:|---|---:|---|",
    ]
    for result in results:
        files = sorted({r.file for r in result.records})
        what = " ".join(summaries.get(f, "") for f in files if not result.suite.by_file)
        if result.suite.by_file:
            what = f"{len(files)} test files, below"
        longest = result.longest
        lines.append(
            f"| {_cell(result.suite.title)} | {_n(len(result.records))} | {_n(result.cases)} "
            f"| {_cell(_pairs(result.outcomes()) if result.records else 'nothing ran')} "
            f"| {f'{longest.seconds:,.2f} s' if longest else ''} | {_cell(what)} |"
        )
    lines.append("")
    for result in results:
        if not result.suite.by_file:
            continue
        lines += [
            f"### {result.suite.title}, by file",
            "",
            "| file | tests | examples run | discarded | explicit | what it shows |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for file in sorted({r.file for r in result.records}):
            mine = [r for r in result.records if r.file == file and r.examples]
            lines.append(
                f"| `{file}` | {_n(len(mine))} "
                f"| {_n(sum(r.examples.ran for r in mine if r.examples))} "
                f"| {_n(sum(r.examples.discarded for r in mine if r.examples))} "
                f"| {_n(sum(r.examples.explicit for r in mine if r.examples))} "
                f"| {_cell(summaries.get(file, ''))} |"
            )
        lines.append("")
    generated = [r for result in results if not result.suite.by_file for r in result.records]
    with_examples = [r for r in generated if r.examples]
    if with_examples:
        lines += [
            "Tests of the other suites that generate their cases (Hypothesis underneath):",
            "",
            "| test | examples run | discarded | explicit |",
            "|---|---:|---:|---:|",
            *(
                f"| `{_cell(r.name)}` | {_n(r.examples.ran)} | {_n(r.examples.discarded)} "
                f"| {_n(r.examples.explicit)} |"
                for r in with_examples
                if r.examples
            ),
            "",
        ]
    not_passed = [r for result in results for r in result.records if r.outcome != "passed"]
    if not_passed:
        lines += [
            "Tests that did not pass:",
            "",
            *(f"- `{_cell(r.name)}`: {r.outcome}" for r in not_passed),
            "",
        ]
    return "\n".join(lines)


def markdown(  # noqa: PLR0913 - keyword-only: the parts of the page, from one run
    *,
    info: Mapping[str, str],
    generator: Sequence[str],
    commands: Sequence[Command],
    chaos: Mapping[str, Any] | None,
    planned_kills: int,
    results: Sequence[SuiteResult],
    summaries: Mapping[str, str],
    total_seconds: float,
) -> str:
    chaos_command = next((c for c in commands if c.name == "chaos"), None)
    lines = [
        "# Reliability",
        "",
        f"Generated by `make reliability` on {info.get('date', '?')}; do not edit by hand.",
        "Every figure on this page comes from the commands below, run in this invocation",
        f"({_seconds(total_seconds)} in all): run them again to check it. The generator's",
        f"command line: `{shown(generator)}`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in info.items()),
        "",
        "## Commands",
        "",
        "`python` is the interpreter that ran the generator (`.venv/bin/python` under make).",
        "",
        "| run | command | wall time | exit status |",
        "|---|---|---:|---:|",
        *(
            f"| {c.name} | `{_cell(shown(c.argv))}` | {_seconds(c.seconds)} | {c.returncode} |"
            for c in commands
        ),
        "",
    ]
    if chaos_command is not None:
        lines.append(chaos_section(chaos, chaos_command, planned_kills))
    lines.append(hostile_section(results, summaries))
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- running ----
def execute(name: str, argv: Sequence[str]) -> Command:
    """Runs one command with its output on this terminal (progress); times it."""
    print(f"\n== {name}: {shown(argv)}", flush=True)
    began = time.monotonic()
    done = subprocess.run(list(argv), cwd=ROOT, check=False)  # noqa: S603 - our own commands
    command = Command(name, tuple(argv), time.monotonic() - began, done.returncode)
    print(f"== {name}: exit {command.returncode} after {_seconds(command.seconds)}", flush=True)
    return command


def chaos_argv(invoices: int, kills: int, seed: int, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nfse_local.chaos",
        f"--invoices={invoices}",
        f"--kills={kills}",
        f"--seed={seed}",
        f"--state-dir={work / 'chaos'}",
        f"--json={work / 'chaos.json'}",
    ]


def pytest_argv(run: str, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        CASE_COUNTER,
        f"--case-counts={work / f'{run}.json'}",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-profile={HYPOTHESIS_PROFILE}",
        "-q",
        *PYTEST_RUNS[run],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--invoices", type=int, default=2000, help="chaos: invoices")
    parser.add_argument("--kills", type=int, default=6, help="chaos: worker SIGKILLs")
    parser.add_argument("--seed", type=int, default=1, help="chaos: seed")
    parser.add_argument("--output", type=Path, default=DOC, help="the page (default %(default)s)")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help=f"run nothing: write the page again from the last run's records ({WORK.name}/)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        run = json.loads((WORK / RUN_RECORD).read_text(encoding="utf-8"))
    else:
        run = run_all(args, [*(sys.argv[1:] if argv is None else argv)])
    commands = [
        Command(c["name"], tuple(c["argv"]), c["seconds"], c["returncode"]) for c in run["commands"]
    ]
    figures = WORK / "chaos.json"
    report = json.loads(figures.read_text(encoding="utf-8")) if figures.is_file() else None
    records = [r for name in PYTEST_RUNS for r in load_records(WORK / f"{name}.json", name)]
    results = [select(suite, records) for suite in SUITES]
    summaries = {file: summary_line(ROOT / file) for file in {r.file for r in records}}
    page = markdown(
        info=run["info"],
        generator=run["generator"],
        commands=commands,
        chaos=report,
        planned_kills=run["plannedKills"],
        results=results,
        summaries=summaries,
        total_seconds=run["seconds"],
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8")
    print(f"\nwrote {args.output}")
    ok = all(c.returncode == 0 for c in commands) and all(r.ok for r in results)
    ok = ok and bool(report and report.get("ok"))
    if not ok:
        print("reliability: a run failed or a test did not pass; see the page", file=sys.stderr)
    return 0 if ok else 1


# What the generator itself saw (machine, commands, times), kept next to the runs' own records
# so that `--render-only` writes the same page again.
RUN_RECORD = "run.json"


def run_all(args: argparse.Namespace, options: Sequence[str]) -> dict[str, Any]:
    """Runs the three commands into a fresh WORK directory; returns (and saves) what it saw."""
    began = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    info = machine() | {"checkout": checkout()}
    commands = [execute("chaos", chaos_argv(args.invoices, args.kills, args.seed, WORK))]
    commands += [execute(name, pytest_argv(name, WORK)) for name in PYTEST_RUNS]
    run = {
        "info": info,
        "generator": [sys.executable, "-m", "bench.reliability", *options],
        "commands": [
            {"name": c.name, "argv": list(c.argv), "seconds": c.seconds, "returncode": c.returncode}
            for c in commands
        ],
        "plannedKills": args.kills,
        "seconds": time.monotonic() - began,
    }
    (WORK / RUN_RECORD).write_text(json.dumps(run, indent=2), encoding="utf-8")
    return run


if __name__ == "__main__":
    sys.exit(main())
