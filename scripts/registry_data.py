"""Write nfse_core/providers/data/municipalities.csv from ACBr's ACBrNFSeXServicos.ini.

Usage:
    python scripts/registry_data.py path/to/ACBrNFSeXServicos.ini \\
        [--commit SHA] [--repo ProjetoACBr/ACBr] [--output path/to/municipalities.csv]
        [--report]

Where to get the ini: the public repository ProjetoACBr/ACBr (a mirror of the ACBr SVN), path
Fontes/ACBrDFe/ACBrNFSeX/ACBrNFSeXServicos.ini (about 1.1 MB, ISO-8859-1 or UTF-8, CRLF or LF;
both are read). Download it once by any means (git, the GitHub "raw" view, an ACBr SVN
checkout) and pass the local path; this script itself uses no network. Pass the commit the copy
was taken at (--commit): it goes into every row's `source` column.

The ini has one section per provider whose URLs all its cities share (e.g. [Betha], [Ginfes])
and one section per IBGE code: Nome, UF, Provedor, Versao (ACBr reads "1.00" when the city has
none: ACBrNFSeXConfiguracoes.pas, TGeralConfNFSe.LerParamsMunicipio), Params, Pro<Op>/Hom<Op>
URLs and comments such as "; Incluído em 07/05/2024" / "; Atualizado em 07/05/2024".

Selection (docs/registry-sources.md explains each rule):
- a city is kept when its (Provedor, Versao) is one of FAMILIES (or its provider is one of
  PLAIN_ABRASF_204 at Versao 2.04);
- its production URL (the city's ProRecepcionar, else its provider section's Pro<Op> URLs) must
  be https:// on port 443 (the platform's egress, nfse_core.providers.registry.EGRESS_PORTS);
  a published homologation URL must be too, or the city is left out;
- a city whose section carries a commented-out `;Provedor=` line naming another provider
  (ACBr's note of a planned switch, e.g. Ginfes -> Giss) is left out: its provider is changing;
- a city that publishes several production service URLs of its own (per operation) is left
  out: the registry holds one service URL per city;
- its IBGE code, name and UF must agree with nfse_core/domain/data/municipios.csv (names are
  compared without accents, case, apostrophes and hyphens); the CSV carries the official name.

Columns: ibge, name, uf, family, provider, producao, homologacao, source, updated. producao /
homologacao are empty when the city publishes none of its own (its provider's shared URLs then
apply, listed in docs/registry-sources.md); `updated` is the latest "Atualizado em" /
"Incluído em" date of the section (ISO), empty when it has none.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "nfse_core" / "providers" / "data" / "municipalities.csv"
MUNICIPIOS = ROOT / "nfse_core" / "domain" / "data" / "municipios.csv"
SOURCE_REPO = "ProjetoACBr/ACBr"
SOURCE_PATH = "Fontes/ACBrDFe/ACBrNFSeX/ACBrNFSeXServicos.ini"
DEFAULT_COMMIT = "00bf6f6af983aff98ddfcf4287d370ff57f2860a"
COLUMNS = (
    "ibge",
    "name",
    "uf",
    "family",
    "provider",
    "producao",
    "homologacao",
    "source",
    "updated",
)
# The version ACBr assumes for a city section without Versao (ACBrNFSeXConfiguracoes.pas).
ACBR_DEFAULT_VERSION = "1.00"
# (ACBr Provedor, Versao) -> the platform's provider family. Ginfes has a single ACBr class
# (TACBrNFSeProviderGinfes, its own "versão 3" schemas) whatever Versao says; its cities carry
# none, so ACBr reads 1.00.
FAMILIES: dict[tuple[str, str], str] = {
    ("ISSNet", "2.04"): "issnet-2.04",
    ("WebISS", "2.02"): "webiss-2.02",
    ("Betha", "2.02"): "betha-2.02",
    ("Ginfes", ACBR_DEFAULT_VERSION): "ginfes-3",
}
# ACBr providers implemented as the plain ABRASF v2 base at Versao=2.04 (standard envelope,
# standard answer reading, no document changes): family abrasf-2.04. None qualified at the
# reviewed commit (docs/registry-sources.md lists each candidate and what it overrides); add a
# provider here only after reading its Provedores/<Name>.Provider.pas, .GravarXml.pas and
# .LerXml.pas.
PLAIN_ABRASF_204: frozenset[str] = frozenset()
EGRESS_PORT = 443
_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_DATE = re.compile(
    r"^;\s*(?:Atualizad[oa]|Inclu[ií]d[oa])\s+(?:em\s+)?(?P<d>\d{2})/(?P<m>\d{2})/(?P<y>\d{4})",
    re.IGNORECASE,
)
_PLANNED_PROVIDER = re.compile(r"^;\s*Provedor\s*=\s*(?P<provider>\S+)", re.IGNORECASE)
_PRO_URL = re.compile(r"^Pro(?!LinkURL|XMLNameSpace|NameSpace|SoapAction)[A-Z]\w*$")
_NOT_SERVICE = re.compile(r"LinkURL|NameSpace|SoapAction")


@dataclass
class Section:
    name: str
    values: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


def read_ini_text(path: Path) -> str:
    """The ini's text: UTF-8 when it decodes, else ISO-8859-1 (the repository's encoding)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


def parse_ini(text: str) -> dict[str, Section]:
    """Sections by name, with their key=value pairs and their `;` comment lines.

    A tolerant reader of ACBr's file (not configparser: comments hold data, values hold `%`)."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match["name"], Section(match["name"]))
            continue
        if current is None or not line:
            continue
        if line.startswith(";"):
            current.comments.append(line)
        elif "=" in line:
            key, value = line.split("=", 1)
            current.values[key.strip()] = value.strip()
    return sections


def egress_ok(url: str) -> bool:
    """https:// on port 443 with a host: what the platform's egress lets out."""
    try:
        parts = urlsplit(url)
        port = parts.port or EGRESS_PORT
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and port == EGRESS_PORT


def updated_of(section: Section) -> str:
    """The section's latest "Atualizado em" / "Incluído em" date, ISO; empty when none."""
    dates = [f"{m['y']}-{m['m']}-{m['d']}" for c in section.comments if (m := _DATE.match(c))]
    return max(dates) if dates else ""


def fold_name(name: str) -> str:
    """A name compared without accents, case, apostrophes, hyphens and repeated spaces."""
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    plain = re.sub(r"[-'`\u00b4\u2019]", " ", plain.casefold())
    return " ".join(plain.split())


def read_municipios(path: Path = MUNICIPIOS) -> dict[str, tuple[str, str]]:
    """IBGE code -> (official name, UF) from the project's municipios.csv."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    return {r["codigo_ibge"]: (r["nome"], r["uf"]) for r in csv.DictReader(lines)}


def planned_provider_change(section: Section, provider: str) -> bool:
    """Whether a commented-out `;Provedor=` names another provider (ACBr's note of a switch)."""
    planned = (m["provider"] for c in section.comments if (m := _PLANNED_PROVIDER.match(c)))
    return any(p.casefold() != provider.casefold() for p in planned)


def family_of(provider: str, version: str) -> str | None:
    if provider in PLAIN_ABRASF_204 and version == "2.04":
        return "abrasf-2.04"
    return FAMILIES.get((provider, version))


def production_urls(section: Section) -> dict[str, str]:
    """The section's own Pro<Op> service URLs (ProRecepcionar, ProGerarNFSe, ...)."""
    return {k: v for k, v in section.values.items() if _PRO_URL.match(k) and v}


def shared_urls(sections: dict[str, Section], provider: str) -> dict[str, str]:
    """The provider section's Pro<Op>/Hom<Op> service URLs, shared by its cities."""
    section = sections.get(provider)
    if section is None:
        return {}
    return {
        k: v
        for k, v in section.values.items()
        if re.match(r"^(Pro|Hom)[A-Z]", k) and not _NOT_SERVICE.search(k) and v and v != "*"
    }


@dataclass
class Selection:
    rows: list[dict[str, str]]
    kept: Counter[str]
    left_out: Counter[tuple[str, str]]  # (family, reason) -> count
    left_out_codes: dict[tuple[str, str], list[str]]


def select(
    sections: dict[str, Section],
    municipios: dict[str, tuple[str, str]],
    source: str,
) -> Selection:
    """The rows of the CSV (sorted by IBGE code) and what was left out, per family."""
    rows: list[dict[str, str]] = []
    left_out: Counter[tuple[str, str]] = Counter()
    left_out_codes: dict[tuple[str, str], list[str]] = {}

    def leave(fam: str, reason: str, code: str) -> None:
        left_out[(fam, reason)] += 1
        left_out_codes.setdefault((fam, reason), []).append(code)

    for code in sorted(k for k in sections if k.isdigit()):
        sec = sections[code]
        provider = sec.values.get("Provedor", "")
        version = sec.values.get("Versao", "") or ACBR_DEFAULT_VERSION
        fam = family_of(provider, version)
        if fam is None:
            continue
        if planned_provider_change(sec, provider):
            leave(fam, "planned provider change (commented Provedor=)", code)
            continue
        official = municipios.get(code)
        if (
            official is None
            or official[1] != sec.values.get("UF", "")
            or fold_name(official[0]) != fold_name(sec.values.get("Nome", ""))
        ):
            leave(fam, "code/name/UF disagree with municipios.csv", code)
            continue
        own = production_urls(sec)
        if len(set(own.values())) > 1:
            leave(fam, "several production service URLs of its own", code)
            continue
        producao = sec.values.get("ProRecepcionar", "")
        effective = (
            [producao]
            if producao
            else [v for k, v in shared_urls(sections, provider).items() if k.startswith("Pro")]
        )
        if not effective:
            leave(fam, "no production URL published", code)
            continue
        if not all(egress_ok(u) for u in effective):
            leave(fam, "production URL not https on 443", code)
            continue
        homologacao = sec.values.get("HomRecepcionar", "")
        if homologacao and not egress_ok(homologacao):
            leave(fam, "homologacao URL not https on 443", code)
            continue
        rows.append(
            {
                "ibge": code,
                "name": official[0],
                "uf": official[1],
                "family": fam,
                "provider": provider,
                "producao": producao,
                "homologacao": homologacao,
                "source": source,
                "updated": updated_of(sec),
            }
        )
    kept = Counter(r["family"] for r in rows)
    return Selection(rows, kept, left_out, left_out_codes)


def render(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def report(selection: Selection, sections: dict[str, Section]) -> str:
    """Counts per family, left-out counts, and the shared URLs of the families' providers."""
    lines = ["kept:"]
    lines += [f"  {fam}: {n}" for fam, n in sorted(selection.kept.items())]
    lines.append("left out:")
    for (fam, reason), n in sorted(selection.left_out.items()):
        codes = " ".join(selection.left_out_codes[(fam, reason)])
        lines.append(f"  {fam}: {n} ({reason}): {codes}")
    lines.append("shared provider URLs:")
    for provider in sorted({p for p, _ in FAMILIES} | PLAIN_ABRASF_204):
        for key, url in shared_urls(sections, provider).items():
            lines.append(f"  [{provider}] {key}={url}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("ini", type=Path, help="local copy of ACBrNFSeXServicos.ini")
    parser.add_argument("--commit", default=DEFAULT_COMMIT, help="commit the copy was taken at")
    parser.add_argument("--repo", default=SOURCE_REPO, help="repository the copy came from")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--municipios", type=Path, default=MUNICIPIOS)
    parser.add_argument("--report", action="store_true", help="print counts to stderr")
    args = parser.parse_args(argv)

    sections = parse_ini(read_ini_text(args.ini))
    source = f"{args.repo}@{args.commit}:{SOURCE_PATH}"
    selection = select(sections, read_municipios(args.municipios), source)
    args.output.write_text(render(selection.rows), encoding="utf-8")
    if args.report:
        sys.stderr.write(report(selection, sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
