"""How long `make test` takes on this machine, written into the README by the run that measured it.

    python -m bench.suite_time            # runs `make test`, then rewrites the README's line
    python -m bench.suite_time --log F    # reads a saved `make test` output instead of running it

The README's figure sits between two markers (MARKERS); nothing else of the README changes.
The run's wall time is measured here, around the whole `make test` process (installation
included when the virtual environment is already there, as on a second run); the test count
is pytest's own summary line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.core import ROOT

README = ROOT / "README.md"
MARKERS = ("<!-- make-test-time:start -->", "<!-- make-test-time:end -->")
# pytest's last line, e.g. "1432 passed, 3 skipped, 41 warnings in 1457.02s (0:24:17)" (without
# -q it stands between rows of "=")
SUMMARY = re.compile(
    r"^=* ?(?P<counts>\d+ (?:passed|failed|errors?)\b.*?) in (?P<seconds>[\d.]+)s"
    r"(?: \([\d:]+\))?(?: =+)?$",
    re.M,
)
COUNT = re.compile(r"(?P<n>\d+) (?P<what>passed|failed|errors?|skipped|xfailed|xpassed)")


@dataclass(frozen=True)
class SuiteRun:
    wall_seconds: float
    pytest_seconds: float
    counts: dict[str, int]
    workers: str
    cores: int
    day: dt.date

    @property
    def passed(self) -> bool:
        return not any(self.counts.get(kind) for kind in ("failed", "error", "errors"))


def parse_summary(output: str) -> tuple[float, dict[str, int]]:
    """pytest's own duration and counts from the last summary line of `output`."""
    matches = list(SUMMARY.finditer(output))
    if not matches:
        raise ValueError("no pytest summary line in the output of make test")
    last = matches[-1]
    counts = {m["what"]: int(m["n"]) for m in COUNT.finditer(last["counts"])}
    return float(last["seconds"]), counts


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def sentence(run: SuiteRun) -> str:
    """The README's line: what ran, where, and how long it took."""
    tests = run.counts.get("passed", 0)
    return (
        f"`make test` ran {tests:,} tests in {minutes(run.wall_seconds)} of wall time "
        f"({run.workers} test processes on {run.cores} cores, {run.day.isoformat()}; "
        "written by `python -m bench.suite_time`)."
    )


def rewrite(readme: str, line: str) -> str:
    start, end = MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README.md has no {start} ... {end} block")
    return pattern.sub(lambda _: f"{start}\n{line}\n{end}", readme, count=1)


def workers_of_makefile(makefile: Path = ROOT / "Makefile") -> str:
    found = re.search(r"^TEST_WORKERS \?= (\S+)$", makefile.read_text(encoding="utf-8"), re.M)
    return os.environ.get("TEST_WORKERS") or (found.group(1) if found else "1")


def run_make_test() -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        ["make", "test"],  # noqa: S607 - the command the README gives, found on PATH
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    sys.stdout.write(done.stdout[-4000:])
    sys.stderr.write(done.stderr[-2000:])
    return wall, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="a saved make test output (not run again)")
    parser.add_argument(
        "--wall-seconds", type=float, help="with --log: the wall time measured around that run"
    )
    args = parser.parse_args(argv)
    if args.log:
        output = args.log.read_text(encoding="utf-8", errors="replace")
        pytest_seconds, counts = parse_summary(output)
        wall = args.wall_seconds if args.wall_seconds is not None else pytest_seconds
    else:
        wall, output = run_make_test()
        pytest_seconds, counts = parse_summary(output)
    run = SuiteRun(
        wall_seconds=wall,
        pytest_seconds=pytest_seconds,
        counts=counts,
        workers=workers_of_makefile(),
        cores=os.cpu_count() or 1,
        day=dt.date.today(),
    )
    if not run.passed:
        print(f"make test did not pass ({counts}): the README keeps its figure", file=sys.stderr)
        return 1
    README.write_text(rewrite(README.read_text(encoding="utf-8"), sentence(run)), encoding="utf-8")
    print(sentence(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
