"""`python -m nfse_local <command>`: invoke events, run the local stack, the demo, admin tasks."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from nfse_local import admin, smoke

TOKEN_REFRESH_SECONDS = 45 * 60


def _serve(args: argparse.Namespace) -> int:
    from nfse_local.stack import (  # noqa: PLC0415 - heavy; only `serve` needs it
        LocalStack,
        StackError,
        StackOptions,
        WorkerOptions,
    )

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds the stack like Ctrl-C

    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials..." per client
    signal.signal(signal.SIGTERM, on_sigterm)
    stack = LocalStack(
        StackOptions(
            state_dir=Path(args.state_dir) if args.state_dir else None,
            simulator=False if args.no_simulator else None,
            database_url=args.database_url,
            gateway_port=args.port,
        ),
        worker=WorkerOptions(start=False if args.no_worker else None),
    )
    try:
        with stack:
            print(json.dumps(stack.session_data(), indent=2), flush=True)
            print(
                f"session: {stack.session_file}\nAPI: {stack.api_url} (Ctrl-C stops everything)",
                file=sys.stderr,
                flush=True,
            )
            # Until Ctrl-C / SIGTERM; ID tokens last an hour, the session file keeps fresh ones.
            never_set = threading.Event()
            while not never_set.wait(TOKEN_REFRESH_SECONDS):
                stack.refresh_tokens()
                print("session: tokens refreshed", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("stopping the local stack", file=sys.stderr, flush=True)
    except StackError as error:
        print(f"serve: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfse_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run event files through their handlers")
    invoke.add_argument("events", nargs="+", help="events/<function>/<case>.json, run in order")
    invoke.add_argument("--session", help="use a running local stack (.local/session.json)")
    serve = commands.add_parser("serve", help="run the whole platform locally until Ctrl-C")
    serve.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    serve.add_argument("--state-dir", help="where session.json, the ledger... go (.local)")
    serve.add_argument("--database-url", help="ledger database (default: $DATABASE_URL, SQLite)")
    serve.add_argument("--no-worker", action="store_true", help="do not start the worker")
    serve.add_argument("--no-simulator", action="store_true", help="no provider simulator")
    admin.add_arguments(commands.add_parser("admin", help="administration (tenants)"))
    smoke.add_arguments(
        commands.add_parser(
            "smoke", help="emit one invoice through a stack and follow it to ISSUED or FAILED"
        )
    )
    args = parser.parse_args(argv)
    if args.command == "invoke":
        from nfse_local.invoke import (  # noqa: PLC0415 - heavy (moto); only `invoke` needs it
            main as invoke_main,
        )

        return invoke_main(args.events, args.session)
    if args.command == "serve":
        return _serve(args)
    if args.command == "admin":
        return admin.run(args)
    if args.command == "smoke":
        return smoke.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
