"""python -m nfse_local.simulator --port 8089: the simulator on its own, until SIGTERM or ^C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from nfse_local.simulator.faults import FaultConfig
from nfse_local.simulator.server import ProviderSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ABRASF 2.04 provider simulator (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=503)
    parser.add_argument("--soap-fault-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument("--lost-rate", type=float, default=0.0)
    parser.add_argument("--issued-then-timeout-rate", type=float, default=0.0)
    parser.add_argument("--consult-lag-seconds", type=float, default=0.0)
    parser.add_argument("--consult-internal-error-rate", type=float, default=0.0)
    parser.add_argument("--soap-fault-200-rate", type=float, default=0.0)
    parser.add_argument("--drip-rate", type=float, default=0.0)
    parser.add_argument("--drip-interval-seconds", type=float, default=0.8)
    parser.add_argument("--drip-bytes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-verify-signatures", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = FaultConfig(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        soap_fault_rate=args.soap_fault_rate,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        lost_rate=args.lost_rate,
        seed=args.seed,
        issued_then_timeout_rate=args.issued_then_timeout_rate,
        consult_lag_seconds=args.consult_lag_seconds,
        consult_internal_error_rate=args.consult_internal_error_rate,
        soap_fault_200_rate=args.soap_fault_200_rate,
        drip_rate=args.drip_rate,
        drip_interval_seconds=args.drip_interval_seconds,
        drip_bytes=args.drip_bytes,
    )
    simulator = ProviderSimulator(
        args.host, args.port, faults=faults, verify_signatures=not args.no_verify_signatures
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    simulator.start()
    print(f"provider simulator: {simulator.url} (admin: {simulator.base_url}/_admin/stats)")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
