"""What every bench section shares: the result row, the run context, the section entry, the
plain-text table and the description of the machine. It imports no section, so the sections and
bench/run.py both import it."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    """One bench run: quick mode, figures earlier sections measured, and each section's notes."""

    quick: bool = False
    measured: dict[str, float] = field(default_factory=dict)
    # Section key -> markdown printed under its table in docs/performance.md (findings, detail).
    notes: dict[str, str] = field(default_factory=dict)

    def iterations(self, full: int, quick: int) -> int:
        """An iteration count: `full` normally, `quick` in smoke tests."""
        return quick if self.quick else full


SectionFn = Callable[[Context], list[Row]]


@dataclass(frozen=True, slots=True)
class Section:
    """A section of the report: its key (for --only), its title and the function that measures."""

    key: str
    title: str
    run: SectionFn


def text_table(section: Section, rows: Sequence[Row]) -> str:
    """A section's rows as an aligned plain-text table under its title."""
    header = ("metric", "value", "target", "verdict")
    body = [(r.metric, r.value, r.target, r.verdict) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]
    out = [f"== {section.title}"]
    for line in [header, *body]:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)


def machine() -> dict[str, str]:
    """The machine a run measures on: CPU, cores, Python, OS, date and load at the start."""
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
