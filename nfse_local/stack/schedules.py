"""The template's ScheduleV2 events, each on its own rate, as EventBridge Scheduler runs them."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from nfse_local.runtime import InvocationFailed
from nfse_local.stack.options import StackError

log = logging.getLogger("nfse_local.stack")

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period_seconds(expression: str) -> float:
    """The period of an EventBridge rate expression ("rate(5 minutes)"); cron is not run."""
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise StackError(f"the local stack runs rate() schedules only, not {expression!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).rstrip("s")]


def start_schedules(
    functions: Mapping[str, Any], invoke: Callable[[str, Any], Any], exit_stack: ExitStack
) -> None:
    """A thread per schedule of `functions` (the template's specs) calling `invoke(name, {})`
    on its rate, until `exit_stack` closes."""
    stop = threading.Event()
    exit_stack.callback(stop.set)
    for name, spec in functions.items():
        for expression in spec.schedules:
            period = schedule_period_seconds(expression)
            thread = threading.Thread(
                target=_run_schedule,
                args=(name, period, invoke, stop),
                name=f"schedule-{name}",
                daemon=True,
            )
            thread.start()


def _run_schedule(
    name: str, period: float, invoke: Callable[[str, Any], Any], stop: threading.Event
) -> None:
    while not stop.wait(period):
        try:
            invoke(name, {})
        except InvocationFailed as failure:  # the schedule has no retries either
            log.warning("scheduled %s failed: %s", name, failure)
