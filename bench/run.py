"""Benchmark runner: one function per section, each returning rows; `make bench` writes the table.

A section is `(key, title, function)`; the function takes a `Context` (quick mode for the smoke
tests, and `measured`, figures earlier sections leave for later ones: the cost model reads the
measured emit CPU from there, and the worker rate from bench/worker.py) and returns `Row`s.
A new section is a module with `rows(ctx) -> list[Row]` and an entry in SECTIONS
(`placeholder()` holds its place until it exists).

    python -m bench.run                       # every section, writes docs/performance.md
    python -m bench.run --only emit signing   # some sections, prints only
    python -m bench.run --quick               # tiny iteration counts (what the smoke test runs)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: nothing to meet (a reference figure)
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.ok]


@dataclass(slots=True)
class Context:
    quick: bool = False
    measured: dict[str, float] = field(default_factory=dict)
    # Section key -> markdown printed under its table in docs/performance.md (findings, detail).
    notes: dict[str, str] = field(default_factory=dict)

    def n(self, full: int, quick: int) -> int:
        """An iteration count: `full` normally, `quick` in smoke tests."""
        return quick if self.quick else full


SectionFn = Callable[[Context], list[Row]]


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    run: SectionFn


# --------------------------------------------------------------------------- timing ----
@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per call over `repeats` runs of `number` calls each."""

    best: float
    median: float
    number: int
    repeats: int


def time_per_call(
    fn: Callable[[], object], *, number: int, repeats: int, warmup: int = 0
) -> Timing:
    """Best and median of `repeats` runs (the machine is shared: best-of is the honest figure)."""
    for _ in range(warmup):
        fn()
    runs: list[float] = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return Timing(min(runs), statistics.median(runs), number, max(1, repeats))


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


# ---------------------------------------------------------------------- placeholders ----
def placeholder(what: str, plug: str) -> SectionFn:
    def rows(_: Context) -> list[Row]:
        return [Row(what, "not measured yet", note=plug)]

    return rows


def _sections() -> list[Section]:
    from bench import cold_start, e2e, emit_path, signing, worker
    from bench import cost as cost_model

    return [
        Section("emit", "1. Emit path, in-process, per invoice", emit_path.rows),
        Section("signing", "1b. Signing (worker side), per document", signing.rows),
        Section("cold_start", "2. Lambda cold start (fresh interpreter)", cold_start.rows),
        Section(
            "worker",
            f"3. Worker throughput (simulator at {worker.LATENCY_SECONDS * 1e3:.0f} ms)",
            worker.rows,
        ),
        Section("e2e", "4. End-to-end (local stack over HTTP)", e2e.rows),
        Section("cost", "5. Cost model (USD, us-east-1 list prices)", cost_model.rows),
    ]


SECTIONS: Callable[[], list[Section]] = _sections


# ------------------------------------------------------------------------- machine ----
def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count() or 0),
        "architecture": platform.machine(),
        "Python": platform.python_version(),
        "OS": platform.platform(terse=True),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at start (1/5/15 min)": load,
    }


# ------------------------------------------------------------------------ rendering ----
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    results: Sequence[tuple[Section, list[Row]]],
    info: dict[str, str],
    notes: dict[str, str] | None = None,
) -> str:
    lines = [
        "# Performance and cost",
        "",
        "Generated by `make bench` (`python -m bench.run`); do not edit by hand. Issue #6.",
        "Every figure, in the tables and in the text, comes from this run (or from the cost",
        "model's inputs it prints). Timings are best-of (or median where said); the machine's",
        "load at the start is below: read them as orders of magnitude with two significant",
        "digits, not as exact figures.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in info.items()),
        "",
    ]
    for section, rows in results:
        lines += [
            f"## {section.title}",
            "",
            "| metric | value | target | verdict | note |",
            "|---|---:|---|---|---|",
        ]
        lines += [
            f"| {_cell(r.metric)} | {_cell(r.value)} | {_cell(r.target)} | {r.verdict} "
            f"| {_cell(r.note)} |"
            for r in rows
        ]
        lines.append("")
        if notes and notes.get(section.key):
            lines += [notes[section.key].rstrip(), ""]
    return "\n".join(lines)


def text_table(section: Section, rows: Sequence[Row]) -> str:
    header = ("metric", "value", "target", "verdict")
    body = [(r.metric, r.value, r.target, r.verdict) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]
    out = [f"== {section.title}"]
    for line in [header, *body]:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)


def run(
    keys: Sequence[str] | None = None,
    *,
    quick: bool = False,
    echo: bool = True,
    ctx: Context | None = None,
) -> list[tuple[Section, list[Row]]]:
    ctx = ctx or Context(quick=quick)
    results: list[tuple[Section, list[Row]]] = []
    for section in SECTIONS():
        if keys and section.key not in keys:
            continue
        start = time.perf_counter()
        rows = section.run(ctx)
        results.append((section, rows))
        if echo:
            print(text_table(section, rows))
            print(f"   ({time.perf_counter() - start:.1f} s)\n", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", metavar="SECTION", help="emit signing cold_start ...")
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown file (default {DOC.relative_to(ROOT)} for a full run, none otherwise)",
    )
    args = parser.parse_args(argv)
    info = machine()
    print("machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + "\n")
    ctx = Context(quick=args.quick)
    results = run(args.only, ctx=ctx)
    output = args.output or (DOC if not args.only and not args.quick else None)
    if output is not None:
        output.write_text(markdown(results, info, ctx.notes), encoding="utf-8")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
