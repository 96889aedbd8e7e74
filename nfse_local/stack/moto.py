"""The stack's moto server: every AWS service on 127.0.0.1, deciding as AWS does."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack

import requests
from moto.server import ThreadedMotoServer

from nfse_local.moto_patches import atomic_moto_writes, aws_iam_parity


def start_moto(
    exit_stack: ExitStack,
    task_credentials: Mapping[str, Mapping[str, str]],
    set_environ: Callable[[Mapping[str, str]], None],
) -> str:
    """Start moto's server (stopped when `exit_stack` closes) from an empty account; its URL.

    `task_credentials` is the live map of the ECS tasks' credentials IAM parity reads;
    `set_environ` sets MOTO_PORT until the stack stops.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call
    # Conditional writes must be atomic, as DynamoDB's are (moto's are not); IAM decides
    # as AWS does (resource ARNs, S3's 403 for a missing key, Task credentials...).
    exit_stack.enter_context(atomic_moto_writes())
    exit_stack.enter_context(aws_iam_parity(task_credentials))
    # Port 0: the kernel picks a free port, so there is no window for another process to
    # take it. moto reads MOTO_PORT when a state machine runs (its tasks call back into
    # this server), so setting it right after the bind and before any resource exists is
    # as good as before; the server hangs forever if its bind fails, which this avoids.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    exit_stack.callback(server.stop)
    host, port = server.get_host_and_port()
    set_environ({"MOTO_PORT": str(port)})
    endpoint = f"http://{host}:{port}"
    # moto's backends outlive a server in the same process (a bench runs two stacks one
    # after the other): each stack starts from an empty account, as a new one would.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    answer = requests.post(
        f"{endpoint}/moto-api/config",
        json={"stepfunctions": {"execute_state_machine": True}},
        timeout=10,
    )
    answer.raise_for_status()
    return endpoint
