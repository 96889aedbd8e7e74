"""`admin refresh-nacional`: the registry's NFS-e Nacional entries from the ADN parametrização.

For each municipality asked about, the ADN says whether it issues through the Sistema Nacional
NFS-e (nfse_core.providers.nacional.parametrizacao). The command writes a registry overlay
(the file `admin put-providers` validates and stores): an adhering municipality gets the
`nacional-1.01` entry, with the answer and its date in `notes`; one that does not adhere loses
the nacional entry the file had (its other entries stay). A municipality the service could not
answer for is left as it was and named. The company's A1 certificate authenticates the calls.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.hazmat.primitives.serialization.pkcs12 import load_key_and_certificates

from nfse_core.domain import places
from nfse_core.providers.nacional import parametrizacao
from nfse_core.providers.registry import parse_overlay

PROFILE = "nacional-1.01"


def _entry(convenio: parametrizacao.Convenio, checked: str) -> dict[str, Any]:
    known = places.municipality(convenio.municipio)
    name = f"{known.name}-{known.uf}" if known else convenio.municipio
    return {
        "name": name.lower().replace(" ", "-"),
        "profile": PROFILE,
        "notes": (
            f"ADN parametrização, {checked}: aderenteEmissorNacional=1"
            f" ({convenio.mensagem or 'convênio ativo'})"
        ),
    }


def refresh(
    overlay: dict[str, Any],
    municipios: Iterable[str],
    ask: Any,
    *,
    today: str | None = None,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The overlay with its nacional entries refreshed from `ask(municipio) -> Convenio`, and
    what changed: {"added", "kept", "removed", "unanswered"}."""
    checked = today or datetime.now(UTC).date().isoformat()
    entries = dict(overlay.get("municipios", {}))
    changes: dict[str, list[str]] = {"added": [], "kept": [], "removed": [], "unanswered": []}
    for municipio in municipios:
        try:
            convenio = ask(municipio)
        except parametrizacao.ParametrizacaoUnavailable:
            changes["unanswered"].append(municipio)
            continue
        current = entries.get(municipio, {})
        if convenio.emissor_nacional:
            changes["kept" if current.get("profile") == PROFILE else "added"].append(municipio)
            entries[municipio] = _entry(convenio, checked)
        elif current.get("profile") == PROFILE:
            del entries[municipio]
            changes["removed"].append(municipio)
    refreshed = {"schema_version": 1, **overlay, "municipios": entries}
    parse_overlay(refreshed)  # the registry's own rules, before anything is written
    return refreshed, changes


def session_with(pfx: Path, password: str, ca_bundle: str | None) -> requests.Session:
    """A session presenting the company's A1 certificate (mutual TLS)."""
    key, cert, _chain = load_key_and_certificates(pfx.read_bytes(), password.encode())
    if key is None or cert is None:
        raise ValueError(f"{pfx} holds no key and certificate")
    folder = Path(tempfile.mkdtemp(prefix="nfse-a1-"))
    (folder / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    key_file = folder / "key.pem"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    session = requests.Session()
    session.cert = (str(folder / "cert.pem"), str(key_file))
    if ca_bundle:
        session.trust_env = False
        session.verify = ca_bundle
    return session


def add_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "refresh-nacional",
        help="write a registry file with the NFS-e Nacional entries the ADN confirms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("municipios", help="IBGE codes, separated by commas")
    parser.add_argument("--out", type=Path, required=True, help="the registry file to write")
    parser.add_argument("--base", type=Path, help="a registry file to start from (else empty)")
    parser.add_argument("--pfx", type=Path, required=True, help="a company's A1 certificate")
    parser.add_argument("--password-env", required=True, help="variable holding its password")
    parser.add_argument(
        "--parametrizacao-url", default=parametrizacao.PRODUCAO, help="the ADN API's base URL"
    )
    parser.add_argument("--ca-bundle", help="PEM roots of the service's server certificate")


def run(args: argparse.Namespace) -> int:
    password = os.environ.get(args.password_env, "")
    session = session_with(args.pfx, password, args.ca_bundle)
    base: dict[str, Any] = (
        json.loads(args.base.read_text(encoding="utf-8"))
        if args.base
        else {"schema_version": 1, "municipios": {}}
    )
    codes = [code.strip() for code in args.municipios.split(",") if code.strip()]
    refreshed, changes = refresh(
        base,
        codes,
        lambda code: parametrizacao.convenio(session, args.parametrizacao_url, code),
    )
    args.out.write_text(json.dumps(refreshed, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(json.dumps({"file": str(args.out), **changes}))
    return 1 if changes["unanswered"] else 0
