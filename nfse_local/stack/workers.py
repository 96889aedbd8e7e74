"""The adapter worker tasks of the stack: each its own process, as a Fargate task is."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from nfse_local.runtime import base_process_env
from nfse_local.stack.options import StackError, WorkerOptions


class WorkerPool:
    """Starts, restarts and stops the worker processes; they stop with `exit_stack`."""

    def __init__(
        self,
        options: WorkerOptions,
        root: Path,
        exit_stack: ExitStack,
        echo: Callable[[str], None],
    ) -> None:
        self.options = options
        self._root = root
        self._exit = exit_stack
        self._echo = echo
        self.env: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.current: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(self, env: Mapping[str, str]) -> None:
        """`options.count` workers with environment `env`, writing to `options.log`."""
        self.env = dict(env)
        self._output = None
        if self.options.log is not None:
            self.options.log.parent.mkdir(parents=True, exist_ok=True)
            self._output = self._exit.enter_context(self.options.log.open("ab"))
        for _ in range(self.options.count):
            self.spawn()

    def spawn(self) -> None:
        output = self._output
        # Its own session: Ctrl-C in the terminal reaches this process only, which then
        # stops the worker in order (SIGTERM, a grace period, SIGKILL).
        process = subprocess.Popen(
            [sys.executable, "-m", "nfse_local.child", "adapters_service"],
            cwd=self._root,
            env={**base_process_env(), **self.env},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
        self.current = process
        self.processes.append(process)
        self._exit.callback(self._kill, process)
        self._echo(f"worker: pid {process.pid}")

    def restart(self, kill_signal: int = signal.SIGKILL, which: int = -1) -> int:
        """Send `kill_signal` to a worker (SIGKILL: a crash, nothing settles), wait for it
        to exit, and start a new one with the same environment; returns the new pid."""
        live = [p for p in self.processes if p.poll() is None]
        if not live:
            raise StackError("the local stack runs no worker")
        process = live[which % len(live)]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(kill_signal)
            try:
                process.wait(timeout=self.options.grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.remove(process)
        self.spawn()
        assert self.current is not None
        return self.current.pid

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise StackError(f"a worker exited at start with code {process.returncode}")

    def stop_gracefully(self) -> int:
        """SIGTERM, as ECS stops a task: the worker finishes its poll and in-flight messages.
        Waits up to `grace_seconds` (then SIGKILL); the exit code."""
        process = self.current
        if process is None:
            raise StackError("the local stack runs no worker")
        grace = self.options.grace_seconds
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._echo(f"worker: no exit {grace:.0f}s after SIGTERM; SIGKILL")
            process.kill()
            return process.wait(timeout=5)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        """At the stack's end the worker is killed: every queue and table goes with moto, so
        a graceful drain (up to a 20 s long poll, then in-flight work) would keep nothing.
        A drain is what `stop_gracefully` (and the ECS stop) does."""
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)
