"""Which municipalities the platform can issue in, by provider family: `admin coverage`.

    python -m nfse_local admin coverage                  # counts per family
    python -m nfse_local admin coverage --list           # one line per municipality
    python -m nfse_local admin coverage --family betha-2.02 --check
    python -m nfse_local admin coverage --write-readme README.md

The registry read is the shipped one (nfse_core/providers/data: providers.json and
municipalities.csv), the one every deployment starts from. `--check` asks each selected entry's
production service for its WSDL (`GET <url>?wsdl`, a few seconds each) and says what answered:
a way to find moved or dead endpoints where a network exists (this machine has none: every
entry then reads "unreachable"). `--write-readme` rewrites the README's "supported
municipalities" table between its markers, from the same data, so the counts there are never
typed by hand.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from nfse_core.providers.registry import ProviderConfig, load_default_data

README_START = "<!-- coverage:start (python -m nfse_local admin coverage --write-readme) -->"
README_END = "<!-- coverage:end -->"

# What each family is, for the table (the data is the registry's; these are its words).
FAMILY_NAMES: Mapping[str, str] = {
    "abrasf-2.04": "plain ABRASF 2.04",
    "issnet-2.04": "ISSNet (Nota Control), ABRASF 2.04",
    "webiss-2.02": "WebISS, ABRASF 2.02",
    "betha-2.02": "Betha e-Nota, ABRASF 2.02",
    "nacional-1.01": "Sistema Nacional NFS-e (SEFIN Nacional), DPS 1.01",
}


@dataclass(frozen=True, slots=True)
class Entry:
    municipio: str
    name: str
    family: str
    producao: str
    homologacao: str | None
    source: str


def entries(municipios: Mapping[str, ProviderConfig] | None = None) -> list[Entry]:
    """The registry's municipalities (the shipped registry unless given), by code."""
    configs = municipios if municipios is not None else load_default_data()[0]
    return [
        Entry(
            municipio=code,
            name=config.name,
            family=config.family,
            producao=config.endpoints.producao,
            homologacao=config.endpoints.homologacao,
            source=config.source,
        )
        for code, config in sorted(configs.items())
        if not config.example
    ]


def counts(rows: Iterable[Entry]) -> Counter[str]:
    return Counter(row.family for row in rows)


def readme_section(rows: list[Entry]) -> str:
    """The README's table: municipalities per family, generated from the registry."""
    per_family = counts(rows)
    lines = [
        "| family (profile) | what it is | municipalities | e.g. |",
        "|---|---|---:|---|",
    ]
    for family in sorted(per_family, key=lambda f: (-per_family[f], f)):
        example = next(row for row in rows if row.family == family)
        lines.append(
            f"| `{family}` | {FAMILY_NAMES.get(family, family)} | {per_family[family]} "
            f"| {example.name} ({example.municipio}) |"
        )
    lines.append(f"| | **total** | **{sum(per_family.values())}** | |")
    return "\n".join(lines)


def write_readme(path: Path, rows: list[Entry]) -> bool:
    """Replace the table between the README's markers; True when the text changed."""
    text = path.read_text("utf-8")
    start = text.find(README_START)
    end = text.find(README_END)
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"{path} has no coverage markers ({README_START} ... {README_END})")
    updated = text[: start + len(README_START)] + "\n" + readme_section(rows) + "\n" + text[end:]
    if updated == text:
        return False
    path.write_text(updated, "utf-8")
    return True


def check(entry: Entry, timeout: float = 5.0, session: requests.Session | None = None) -> str:
    """What the entry's production service answers to `GET <url>?wsdl`."""
    http = session or requests.Session()
    url = entry.producao + ("&wsdl" if "?" in entry.producao else "?wsdl")
    try:
        response = http.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return f"unreachable ({type(exc).__name__})"
    kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
    wsdl = b"definitions" in response.content[:4096]
    return f"HTTP {response.status_code} {kind}{', a WSDL' if wsdl else ''}"


def add_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "coverage",
        help="the municipalities each provider family covers (and, with --check, their WSDLs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--family", default=None, help="only this family (e.g. issnet-2.04)")
    parser.add_argument("--list", action="store_true", help="one line per municipality")
    parser.add_argument("--check", action="store_true", help="GET each production WSDL")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per --check request")
    parser.add_argument("--write-readme", type=Path, default=None, help="rewrite its table")


def run(args: argparse.Namespace) -> tuple[int, str]:
    """(exit code, text to print)."""
    rows = entries()
    if args.write_readme is not None:
        changed = write_readme(args.write_readme, rows)
        return 0, f"{args.write_readme}: {'updated' if changed else 'already current'}"
    if args.family:
        rows = [row for row in rows if row.family == args.family]
        if not rows:
            return 2, f"no municipality of family {args.family!r}"
    lines: list[str] = []
    if args.list or args.check:
        for row in rows:
            homologacao = urlsplit(row.homologacao).hostname if row.homologacao else "-"
            line = (
                f"{row.municipio}  {row.name}  {row.family}"
                f"  producao={urlsplit(row.producao).hostname}  homologacao={homologacao}"
            )
            if args.check:
                line += f"  {check(row, args.timeout)}"
            lines.append(line)
    per_family = counts(rows)
    lines += [f"{family}: {n}" for family, n in sorted(per_family.items())]
    lines.append(f"total: {sum(per_family.values())}")
    return 0, "\n".join(lines)
