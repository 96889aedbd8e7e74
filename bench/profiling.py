"""How the worker and end-to-end sections measure: CPU time by thread group and by process,
peak memory, cProfile summaries with the waits left out, and the ledger's timestamps as epoch
seconds."""

from __future__ import annotations

import contextlib
import os
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.core import ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ThreadCpu:
    """CPU time of every thread started while installed, filed under `group_of(thread)`, so
    one process holding several servers (moto, the simulator, the gateway) can be split by
    server. Cheap (two clock reads per thread), so it runs in timed passes too.

    (Since Python 3.12 cProfile uses sys.monitoring, process-wide: one Profile enabled in any
    thread records every thread, and a second one cannot be enabled. The profiles here are
    therefore one per process, and this class gives the split by server.)
    """

    def __init__(self, group_of: Callable[[threading.Thread], str]) -> None:
        self._group_of = group_of
        self._lock = threading.Lock()
        self._done: dict[str, float] = defaultdict(float)
        self._live: dict[int, tuple[str, float]] = {}  # thread ident -> (group, CPU at start)

    @property
    def cpu(self) -> dict[str, float]:
        """CPU seconds by group so far, threads still running (keep-alive ones) included."""
        with self._lock:
            totals = defaultdict(float, self._done)
            live = list(self._live.items())
        for ident, (group, started) in live:
            with contextlib.suppress(OSError, ProcessLookupError):
                clock = time.pthread_getcpuclockid(ident)
                totals[group] += time.clock_gettime(clock) - started
        return dict(totals)

    @contextlib.contextmanager
    def installed(self) -> Iterator[ThreadCpu]:
        original = threading.Thread.run
        owner = self

        def run(thread: threading.Thread) -> None:
            group = owner._group_of(thread)
            ident = threading.get_ident()
            with owner._lock:
                owner._live[ident] = (group, time.thread_time())
            try:
                original(thread)
            finally:
                with owner._lock:
                    _group, started = owner._live.pop(ident)
                    owner._done[group] += time.thread_time() - started

        threading.Thread.run = run  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            threading.Thread.run = original  # type: ignore[method-assign]


def _package(filename: str) -> str:
    """The top-level package a profiled function belongs to (for a per-package summary)."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    parts = Path(filename).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else "site-packages"
    try:
        relative = Path(filename).resolve().relative_to(ROOT)
        return ".".join(relative.parts[:2]).removesuffix(".py")
    except ValueError:
        return "stdlib:" + Path(filename).stem


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    total_seconds: float
    by_package: list[tuple[str, float]]  # tottime share, highest first
    top_functions: list[tuple[str, float, int]]  # (function, tottime share, calls)

    def line(self, packages: int = 6) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in self.by_package[:packages])


# Since Python 3.12 cProfile's times are wall time per thread: a call that blocks (a socket
# read, a poll, a lock) is waiting, not using CPU. These are left out of the shares.
WAITS = (
    "recv_into",
    "recv",
    "sendall",
    "send",
    "poll",
    "select",
    "acquire",
    "sleep",
    "wait",
    "accept",
    "connect",
    "_wait_for_tstate_lock",
)


def _is_wait(key: tuple[str, int, str]) -> bool:
    filename, _line, name = key
    if filename == "~":
        return any(f"'{w}'" in name or name.endswith(f".{w}>") for w in WAITS)
    return "selectors" in filename and name == "select"


def summarize(stats: pstats.Stats, top: int = 10) -> ProfileSummary:
    """Shares of own time by package and function, waits (see WAITS) left out."""
    every: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    raw = {k: v for k, v in every.items() if not _is_wait(k)}
    total = sum(v[2] for v in raw.values()) or 1e-9
    packages: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), value in raw.items():
        packages[_package(filename)] += value[2]
    functions = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]

    def label(key: tuple[str, int, str]) -> str:
        filename, line, name = key
        if filename == "~":
            return name
        return f"{_package(filename)}:{Path(filename).name}:{line}({name})"

    return ProfileSummary(
        total_seconds=total,
        by_package=sorted(((k, v / total) for k, v in packages.items()), key=lambda x: -x[1]),
        top_functions=[(label(k), v[2] / total, int(v[1])) for k, v in functions],
    )


def server_group(thread: threading.Thread) -> str:
    """moto, simulator or gateway: which server's request a thread serves (by its target)."""
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__self__", None)
    module = type(owner).__module__ if owner is not None else ""
    if module.startswith("werkzeug") or module.startswith("moto"):
        return "moto"
    if module.startswith("nfse_local.simulator"):
        return "simulator"
    if module.startswith("http.server") or module.startswith("socketserver"):
        return "gateway"  # the local gateway is a plain ThreadingHTTPServer
    return "other"


def epoch_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_profile(path: Path | None) -> pstats.Stats | None:
    if path is None or not path.exists():
        return None
    return pstats.Stats(str(path))


def profile_note(label: str, stats: pstats.Stats | None, top: int = 8) -> str:
    if stats is None:
        return f"- {label}: no profile\n"
    summary = summarize(stats, top)
    lines = [f"- {label} (tottime by package): {summary.line()}", "", "  ```text"]
    lines += [f"  {share:5.1%} {calls:>9,}  {name}" for name, share, calls in summary.top_functions]
    lines += ["  ```", ""]
    return "\n".join(lines)
