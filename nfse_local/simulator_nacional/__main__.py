"""python -m nfse_local.simulator_nacional: the simulated SEFIN Nacional until SIGTERM or ^C.

With --cert-dir (the certificate store's layout: {cnpj}.pfx and {cnpj}.password) it serves
HTTPS and requires a client certificate among those; --ca-bundle-out writes its server
certificate for the clients. Without it, plain HTTP (--insecure-http must say so).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from nfse_local.simulator_nacional.faults import NacionalFaults
from nfse_local.simulator_nacional.server import NacionalSimulator


def trusted_certificates(cert_dir: Path) -> list[x509.Certificate]:
    """The certificate of every {cnpj}.pfx in `cert_dir` (its password in {cnpj}.password)."""
    found: list[x509.Certificate] = []
    for pfx in sorted(cert_dir.glob("*.pfx")):
        password = pfx.with_suffix(".password").read_bytes().strip()
        _key, cert, _chain = pkcs12.load_key_and_certificates(pfx.read_bytes(), password)
        if cert is not None:
            found.append(cert)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SEFIN Nacional (NFS-e) simulator (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--admin-port", type=int, default=None, help="plain-HTTP /_admin")
    parser.add_argument("--cert-dir", type=Path, default=None)
    parser.add_argument("--ca-bundle-out", type=Path, default=None)
    parser.add_argument("--insecure-http", action="store_true")
    parser.add_argument("--tipo-ambiente", type=int, choices=(1, 2), default=2)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=503)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument("--lost-rate", type=float, default=0.0)
    parser.add_argument("--issued-then-timeout-rate", type=float, default=0.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    parser.add_argument("--consult-error-rate", type=float, default=0.0)
    parser.add_argument("--consult-lag-seconds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-verify-signatures", action="store_true")
    parser.add_argument("--success-id-dps", choices=("nfse", "dps"), default="nfse")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.cert_dir is None and not args.insecure_http:
        parser.error("give --cert-dir (mutual TLS) or --insecure-http")
    trusted = trusted_certificates(args.cert_dir) if args.cert_dir is not None else []
    if args.cert_dir is not None and not trusted:
        parser.error(f"no {{cnpj}}.pfx in {args.cert_dir}")
    faults = NacionalFaults(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        lost_rate=args.lost_rate,
        issued_then_timeout_rate=args.issued_then_timeout_rate,
        reject_rate=args.reject_rate,
        consult_error_rate=args.consult_error_rate,
        consult_lag_seconds=args.consult_lag_seconds,
        seed=args.seed,
    )
    simulator = NacionalSimulator(
        args.host,
        args.port,
        trusted_clients=trusted,
        faults=faults,
        tipo_ambiente=args.tipo_ambiente,
        verify_signatures=not args.no_verify_signatures,
        success_id_dps=args.success_id_dps,
        admin_port=args.admin_port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    simulator.start()
    if args.ca_bundle_out is not None and simulator.ca_bundle is not None:
        shutil.copyfile(simulator.ca_bundle, args.ca_bundle_out)
    admin = simulator.admin_url or simulator.root_url
    print(f"sefin nacional simulator: {simulator.base_url} (admin: {admin}/_admin/stats)")
    sys.stdout.flush()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
