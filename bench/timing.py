"""Timing a call the way every bench section does (best and median of repeated runs), and the
duration formats of the report."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


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
    """Seconds as microseconds, one decimal."""
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    """Seconds as milliseconds, two decimals."""
    return f"{seconds * 1e3:,.2f} ms"
