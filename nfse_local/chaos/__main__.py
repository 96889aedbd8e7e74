"""python -m nfse_local.chaos: the chaos run from the command line; exits 1 when an invariant
fails."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import nfse_local.chaos
from nfse_local.chaos.config import ChaosConfig
from nfse_local.chaos.driver import run


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(
        prog="python -m nfse_local.chaos", description=nfse_local.chaos.__doc__
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--post-threads", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker tasks at once")
    parser.add_argument(
        "--sweep-redrive-after",
        type=int,
        default=defaults.sweep_redrive_after,
        help="SweepRedriveAfterSeconds: the sweeper looks at invoices this old (60 at least)",
    )
    parser.add_argument(
        "--sweep-live-window",
        type=int,
        default=defaults.sweep_live_window,
        help="SweepLiveWindowSeconds: an attempt this recent counts as work (60 at least)",
    )
    parser.add_argument(
        "--sweep-every",
        type=float,
        default=defaults.sweep_every,
        help="seconds between SweeperFn runs while the run settles",
    )
    parser.add_argument("--sqlite", action="store_true", help="ledger in SQLite, not PostgreSQL")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        invoices=args.invoices,
        kills=args.kills,
        seed=args.seed,
        post_threads=args.post_threads,
        worker_concurrency=args.worker_concurrency,
        workers=args.workers,
        sweep_redrive_after=args.sweep_redrive_after,
        sweep_live_window=args.sweep_live_window,
        sweep_every=args.sweep_every,
        use_postgres=not args.sqlite,
        state_dir=args.state_dir,
    )
    logging.basicConfig(level=logging.WARNING)
    report = run(config)
    for line in report.lines():
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
