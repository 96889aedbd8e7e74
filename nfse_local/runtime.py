"""A Lambda function in its own process, as the Lambda service runs it: the local runtime.

`python -m nfse_local.runtime functions.emit.app:handler --port-file F --timeout 20` imports
the handler once (the cold start), then answers invocations one at a time on 127.0.0.1, at the
path the Lambda Runtime Interface Emulator uses (POST /2015-03-31/functions/function/
invocations, the event as the body, the handler's result as the answer). Each function thus
has what it has in AWS and nothing more: its own environment (its role's credentials, its own
variables), its own module state, one event at a time, and a context whose remaining time runs
out at the function's Timeout. `FunctionProcess` is the parent's side: it starts the process,
sends events, and treats a process that outlives its Timeout or dies as Lambda does (the
invocation fails, the next one starts a new process).

Fault injection for the chaos run (nfse_local/chaos/) lives here, outside the product code:
NFSE_LOCAL_FAULTS = {"die_before": {"StartExecution": 0.1}, "lose_after": {...}} makes the
process exit (os._exit, as a killed Lambda) just before, or raise just after, the named AWS
operation, with the given probability.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import requests
from botocore.client import BaseClient

from nfse_local.child import exit_with_parent

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
FAULTS_ENV = "NFSE_LOCAL_FAULTS"
ROOT = Path(__file__).resolve().parent.parent


class InvocationFailed(RuntimeError):
    """The function raised, timed out or its process died (Lambda's function error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class LambdaContext:
    """The context object the Lambda runtime hands a handler; its time runs out for real."""

    function_name: str
    timeout_ms: int = 30_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not self._deadline:
            self._deadline = time.monotonic() + self.timeout_ms / 1000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ------------------------------------------------------------------------ the process ---


def _install_faults(spec: Mapping[str, Mapping[str, float]], seed: int | None) -> None:
    """Wrap botocore's API call: die just before, or lose the answer just after, an operation."""
    rng = random.Random(seed)  # noqa: S311 - fault injection, not security
    die_before = dict(spec.get("die_before", {}))
    lose_after = dict(spec.get("lose_after", {}))
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def faulty(self: Any, operation_name: str, api_params: Any) -> Any:
        if rng.random() < die_before.get(operation_name, 0.0):
            os._exit(137)  # killed: nothing after this line happens, as in a dead Lambda
        result = original(self, operation_name, api_params)
        if rng.random() < lose_after.get(operation_name, 0.0):
            raise ConnectionError(f"injected: the answer of {operation_name} was lost")
        return result

    BaseClient._make_api_call = faulty  # type: ignore[attr-defined]


def serve(handler_ref: str, port_file: Path, timeout: float, memory: int) -> None:
    exit_with_parent()  # a stack killed outright leaves no function process behind
    module_name, attr = handler_ref.split(":")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    faults = os.environ.get(FAULTS_ENV)
    if faults:
        spec = json.loads(faults)
        _install_faults(spec, spec.get("seed"))
    handler: Callable[[Any, Any], Any] = getattr(importlib.import_module(module_name), attr)
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", module_name)
    busy = threading.Lock()

    class Invocations(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            event = json.loads(self.rfile.read(length) or b"null")
            context = LambdaContext(
                function_name,
                timeout_ms=int(timeout * 1000),
                memory_limit_in_mb=memory,
                aws_request_id=self.headers.get("Lambda-Runtime-Aws-Request-Id")
                or str(uuid.uuid4()),
            )
            with busy:  # one event at a time, as one Lambda execution environment
                try:
                    answer: dict[str, Any] = {"result": handler(event, context)}
                except Exception as exc:
                    answer = {
                        "error": {
                            "errorType": type(exc).__name__,
                            "errorMessage": str(exc),
                            "stackTrace": traceback.format_exc().splitlines(),
                        }
                    }
            body = json.dumps(answer, default=str).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    # Threads take connections (a keep-alive client must not block others); `busy` lets one
    # event run at a time, as in one execution environment.
    server = ThreadingHTTPServer(("127.0.0.1", 0), Invocations)
    server.daemon_threads = True
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.server_address[1]))
    temporary.replace(port_file)  # the parent sees the whole port or nothing
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("handler", help="module:attribute, e.g. functions.emit.app:handler")
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="the function's Timeout")
    parser.add_argument("--memory", type=int, default=512)
    args = parser.parse_args(argv)
    serve(args.handler, args.port_file, args.timeout, args.memory)
    return 0


# ------------------------------------------------------------------------- the parent ---


class FunctionProcess:
    """One function's execution environment: started on first use, replaced when it dies or
    outlives its Timeout (Lambda's "Task timed out"), one invocation at a time."""

    def __init__(  # noqa: PLR0913 - keyword-only: the function's settings from the template
        self,
        name: str,
        handler_ref: str,
        *,
        env: Mapping[str, str],
        timeout: float,
        memory: int = 512,
        state_dir: Path,
        log: IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.handler_ref = handler_ref
        self.env = dict(env)
        self.timeout = timeout
        self.memory = memory
        self._state_dir = state_dir
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._url = ""
        self._lock = threading.Lock()
        self._http = requests.Session()
        self.cold_starts = 0
        self.restarts = 0

    def start(self) -> None:
        with self._lock:
            self._ensure()

    @property
    def pid(self) -> int:
        """The running process's id (started if need be)."""
        self.start()
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        """Where the running process takes invocations (Lambda's RIE path), or ""."""
        return self._url if self._process is not None and self._process.poll() is None else ""

    def _ensure(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        port_file = self._state_dir / f"runtime-{self.name}-{uuid.uuid4().hex[:8]}.port"
        process = subprocess.Popen(  # noqa: S603 - our own module, a fixed argument list
            [
                sys.executable,
                "-m",
                "nfse_local.runtime",
                self.handler_ref,
                "--port-file",
                str(port_file),
                "--timeout",
                str(self.timeout),
                "--memory",
                str(self.memory),
            ],
            cwd=ROOT,
            env={**base_process_env(), **self.env, "AWS_LAMBDA_FUNCTION_NAME": self.name},
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None:
                raise InvocationFailed("Runtime.ExitError", f"{self.name} exited at start")
            if time.monotonic() > deadline:
                process.kill()
                raise InvocationFailed("Runtime.InitError", f"{self.name} did not start")
            time.sleep(0.02)
        self._url = f"http://127.0.0.1:{port_file.read_text().strip()}{INVOKE_PATH}"
        port_file.unlink(missing_ok=True)
        self._process = process
        self.cold_starts += 1

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any:
        """The handler's result; InvocationFailed when it raised, timed out or died."""
        with self._lock:
            self._ensure()
            headers = {"Lambda-Runtime-Aws-Request-Id": request_id or str(uuid.uuid4())}
            try:
                answer = self._http.post(
                    self._url,
                    data=json.dumps(event).encode(),
                    headers=headers,
                    # The function's own Timeout, plus the time to answer: past it, Lambda
                    # stops the environment and reports the invocation as timed out.
                    timeout=(5, self.timeout + 2),
                )
            except requests.Timeout:
                self._replace()
                raise InvocationFailed(
                    "Sandbox.Timedout", f"{self.name} timed out after {self.timeout:g} s"
                ) from None
            except requests.ConnectionError:
                self._replace()
                raise InvocationFailed("Runtime.ExitError", f"{self.name} exited") from None
        data = answer.json()
        if "error" in data:
            error = data["error"]
            raise InvocationFailed(str(error["errorType"]), str(error["errorMessage"]))
        return data["result"]

    def _replace(self) -> None:
        self.stop()
        self.restarts += 1

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)


def base_process_env() -> dict[str, str]:
    """What a process inherits besides its function's environment: the interpreter's own needs
    (PATH, HOME, locale, the virtual environment), never another function's settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "TZ")
    return {name: os.environ[name] for name in keep if name in os.environ}


if __name__ == "__main__":
    raise SystemExit(main())
