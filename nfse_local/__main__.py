"""`python -m nfse_local <command>`: invoke events, run the local stack, the demo, admin tasks."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfse_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run event files through their handlers")
    invoke.add_argument("events", nargs="+", help="events/<function>/<case>.json, run in order")
    invoke.add_argument("--session", help="use a running local stack (.local/session.json)")
    args = parser.parse_args(argv)
    if args.command == "invoke":
        from nfse_local.invoke import main as invoke_main

        return invoke_main(args.events, args.session)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
