"""The municipalities registry data (nfse_core/providers/data/municipalities.csv) and its script.

The CSV's invariants hold the shipped rows to what the platform can use: real IBGE codes whose
name and UF agree with municipios.csv, one of the provider families, endpoints its egress lets
out (https on port 443, EGRESS_PORTS), real hosts, and a source per row. The script
(scripts/registry_data.py) is run on a small ini written here in ACBr's layout, one section per
selection rule, so each rule is seen keeping or leaving out a city.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

from nfse_core.providers.registry import EGRESS_PORTS

ROOT = Path(__file__).resolve().parents[2]
CSV_PATH = ROOT / "nfse_core" / "providers" / "data" / "municipalities.csv"
MUNICIPIOS = ROOT / "nfse_core" / "domain" / "data" / "municipios.csv"
DOC = ROOT / "docs" / "registry-sources.md"
HEADER = [
    "ibge",
    "name",
    "uf",
    "family",
    "provider",
    "producao",
    "homologacao",
    "source",
    "updated",
]
FAMILY_PROVIDER = {
    "abrasf-2.04": None,  # any provider ACBr implements as the plain ABRASF v2 base
    "issnet-2.04": "ISSNet",
    "webiss-2.02": "WebISS",
    "betha-2.02": "Betha",
    "ginfes-3": "Ginfes",
}
MINIMUMS = {"issnet-2.04": 10, "webiss-2.02": 10, "betha-2.02": 10}
# Families whose cities publish no URL of their own: the provider's shared URLs apply (listed
# in docs/registry-sources.md, moved into the family profile by the registry).
SHARED_URL_FAMILIES = {"ginfes-3"}
SOURCE = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+\.(ini|wsdl)$")


def _script() -> ModuleType:
    path = ROOT / "scripts" / "registry_data.py"
    spec = importlib.util.spec_from_file_location("registry_data_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


registry_data = _script()


def _municipios() -> dict[str, tuple[str, str]]:
    lines = MUNICIPIOS.read_text(encoding="utf-8").splitlines()
    rows = csv.DictReader(line for line in lines if not line.startswith("#"))
    return {r["codigo_ibge"]: (r["nome"], r["uf"]) for r in rows}


def _rows(path: Path | None = None) -> list[dict[str, str]]:
    with (path or CSV_PATH).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _egress_ok(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and (parts.port or 443) in EGRESS_PORTS


# ---------------------------------------------------------------- the shipped CSV


def test_csv_header_and_order() -> None:
    with CSV_PATH.open(encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == HEADER
    codes = [r["ibge"] for r in _rows()]
    assert codes == sorted(codes)
    assert len(codes) == len(set(codes)), "an IBGE code appears twice"


def test_csv_has_enough_rows_per_family() -> None:
    rows = _rows()
    counts = Counter(r["family"] for r in rows)
    assert len(rows) >= 100
    for family, minimum in MINIMUMS.items():
        assert counts[family] >= minimum, (family, counts[family])
    assert set(counts) <= set(FAMILY_PROVIDER), set(counts) - set(FAMILY_PROVIDER)


def test_csv_codes_names_and_uf_agree_with_municipios() -> None:
    municipios = _municipios()
    for r in _rows():
        assert r["ibge"] in municipios, r["ibge"]
        assert (r["name"], r["uf"]) == municipios[r["ibge"]], r


def test_csv_family_provider_and_source() -> None:
    for r in _rows():
        assert r["provider"], r
        expected = FAMILY_PROVIDER[r["family"]]
        if expected is not None:
            assert r["provider"] == expected, r
        assert SOURCE.match(r["source"]), r["source"]
        if r["updated"]:
            assert date.fromisoformat(r["updated"]) <= date.today(), r


def test_csv_endpoints_are_real_and_leave_by_the_egress() -> None:
    for r in _rows():
        if not r["producao"]:
            assert r["family"] in SHARED_URL_FAMILIES, f"{r['ibge']}: no production URL"
            assert not r["homologacao"], r
        for column in ("producao", "homologacao"):
            url = r[column]
            if not url:
                continue
            assert _egress_ok(url), (r["ibge"], column, url)
            host = urlsplit(url).hostname or ""
            assert "." in host, url
            assert not host.endswith((".invalid", ".test", ".example", ".localhost")), url
            assert "example" not in host, url


def test_docs_counts_agree_with_csv() -> None:
    counts = Counter(r["family"] for r in _rows())
    text = DOC.read_text("utf-8")
    kept_table = text[text.index("Rows kept, per family") : text.index("Left out:")]
    documented = dict(re.findall(r"^\|\s*([a-z0-9.-]+)\s*\|\s*(\d+)\s*\|", kept_table, re.M))
    for family in FAMILY_PROVIDER:
        assert int(documented.get(family, "-1")) == counts[family], family


# ---------------------------------------------------------------- the script on an excerpt

# A few sections in ACBr's layout (written for this test, hosts under .test): each city
# exercises one selection rule. Real IBGE codes, so names and UF meet municipios.csv.
EXCERPT = """\
; cabeçalho
[Betha]
ProRecepcionar=https://betha-v1.test/recepcionarLoteRps
HomRecepcionar=https://betha-v1.test/homologacao/recepcionarLoteRps

[Ginfes]
ProRecepcionar=https://ginfes-prod.test/ServiceGinfesImpl
HomRecepcionar=https://ginfes-hom.test/ServiceGinfesImpl

[ISSNet]
HomRecepcionar=https://issnet-hom.test/servicos.asmx

[1100049]
; Incluído em 17/11/2021
; Atualizado em 05/01/2024
Nome=Cacoal
UF=RO
Provedor=WebISS
Versao=2.02
ProRecepcionar=https://cacoal.webiss.test/ws/nfse.asmx
HomRecepcionar=https://hom.webiss.test/ws/nfse.asmx
ProLinkURL=http://cacoal.webiss.test/visualizar/%CodVerif%

[1100304]
Nome=Vilhena
UF=RO
Provedor=WebISS
ProRecepcionar=https://vilhena-v1.webiss.test/NfseServices.svc

[1101492]
Nome=Sao Francisco do Guapore
UF=RO
Provedor=WebISS
Versao=2.02
ProRecepcionar=https://guapore.webiss.test/ws/nfse.asmx

[1702109]
Nome=Araguaina
UF=TO
Provedor=WebISS
Versao=2.02
ProRecepcionar=https://araguaina.webiss.test/ws/a.asmx
ProGerarNFSe=https://araguaina.webiss.test/ws/b.asmx

[2513653]
Nome=Santarem
UF=PB
Provedor=Ginfes

[3106705]
; Provedor=Ginfes desde 2019
Nome=Betim
UF=MG
Provedor=Ginfes

[3118601]
Nome=Contagem
UF=MG
Provedor=Ginfes
ProLinkURL=http://contagem.ginfes.test/report

[3122306]
Nome=Divinopolis
UF=MG
Provedor=Betha
Versao=2.02
ProRecepcionar=http://betha-v2.test/nfseWS

[3510906]
Nome=Cássia dos Coqueiros
UF=SP
Provedor=Betha
Versao=2.02
ProRecepcionar=https://betha-v2.test/rps/ws
HomRecepcionar=https://betha-v2.test/rps/ws

[3543303]
Nome=Ribeirao Pires
UF=SP
Provedor=Ginfes
HomRecepcionar=http://ribeiraopires.ginfes.test/ServiceGinfesImpl

[3543402]
; Atualizado 27/02/2023
Nome=Ribeirao Preto
UF=SP
Provedor=ISSNet
Versao=2.04
ProRecepcionar=https://issnet.test:443/abrasf204/ribeiraopreto/nfse.asmx

[3547809]
Nome=Santo Andre
UF=SP
Provedor=Ginfes
;Provedor=Giss
;ProRecepcionar=https://santoandre.giss.test/nfse-ws

[3548807]
Nome=Sao Caetano do Sul
UF=SP
Provedor=Betha

[5103403]
Nome=Cuiaba
UF=MT
Provedor=ISSNet
Versao=2.04
ProRecepcionar=https://cuiaba.issnet.test:8443/nfse.asmx
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def excerpt(tmp_path: Path) -> Path:
    path = tmp_path / "ACBrNFSeXServicos.ini"
    # The repository's file is ISO-8859-1 with CRLF line ends.
    path.write_bytes(EXCERPT.replace("\n", "\r\n").encode("iso-8859-1"))
    return path


def _run(excerpt: Path, tmp_path: Path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / "municipalities.csv"
    argv = [str(excerpt), "--commit", COMMIT, "--output", str(out), *extra]
    assert registry_data.main(argv) == 0
    return _rows(out)


def test_script_keeps_the_cities_each_rule_allows(excerpt: Path, tmp_path: Path) -> None:
    rows = {r["ibge"]: r for r in _run(excerpt, tmp_path)}
    assert sorted(rows) == ["1100049", "1101492", "3106705", "3118601", "3510906", "3543402"]
    assert rows["1100049"] == {
        "ibge": "1100049",
        "name": "Cacoal",
        "uf": "RO",
        "family": "webiss-2.02",
        "provider": "WebISS",
        "producao": "https://cacoal.webiss.test/ws/nfse.asmx",
        "homologacao": "https://hom.webiss.test/ws/nfse.asmx",
        "source": f"ProjetoACBr/ACBr@{COMMIT}:Fontes/ACBrDFe/ACBrNFSeX/ACBrNFSeXServicos.ini",
        "updated": "2024-01-05",
    }
    # The official name replaces ACBr's unaccented one; accents in a Latin-1 file are read.
    assert rows["1101492"]["name"] == "São Francisco do Guaporé"
    assert rows["3510906"]["name"] == "Cássia dos Coqueiros"
    # "Atualizado" without "em" is a date too; an explicit :443 is port 443.
    assert rows["3543402"]["updated"] == "2023-02-27"
    assert rows["3543402"]["family"] == "issnet-2.04"
    assert rows["3543402"]["homologacao"] == ""
    # Ginfes cities publish no URL: the shared [Ginfes] URLs apply, the columns stay empty.
    assert (rows["3118601"]["producao"], rows["3118601"]["homologacao"]) == ("", "")
    assert rows["3118601"]["family"] == "ginfes-3"
    # A commented Provedor= naming the same provider is no planned change.
    assert rows["3106705"]["family"] == "ginfes-3"
    assert rows["3510906"]["family"] == "betha-2.02"


def test_script_reports_what_it_left_out(
    excerpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(excerpt, tmp_path, "--report")
    err = capsys.readouterr().err
    assert "  webiss-2.02: 2\n" in err
    assert "betha-2.02: 1 (production URL not https on 443): 3122306" in err
    assert "issnet-2.04: 1 (production URL not https on 443): 5103403" in err
    assert "ginfes-3: 1 (planned provider change (commented Provedor=)): 3547809" in err
    assert "ginfes-3: 1 (code/name/UF disagree with municipios.csv): 2513653" in err
    assert "ginfes-3: 1 (homologacao URL not https on 443): 3543303" in err
    assert "webiss-2.02: 1 (several production service URLs of its own): 1702109" in err
    assert "[Ginfes] ProRecepcionar=https://ginfes-prod.test/ServiceGinfesImpl" in err
    # Versao absent is ACBr's 1.00: WebISS and Betha v1 cities are no 2.0x family.
    assert "1100304" not in err and "3548807" not in err


def test_script_reads_utf8_like_latin1(excerpt: Path, tmp_path: Path) -> None:
    utf8 = tmp_path / "utf8.ini"
    utf8.write_text(EXCERPT, encoding="utf-8")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _run(excerpt, tmp_path / "a") == _run(utf8, tmp_path / "b")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://nfse.issnetonline.com.br/abrasf204/x/nfse.asmx", True),
        ("https://host.com.br:443/ws", True),
        ("http://host.com.br/ws", False),
        ("https://host.com.br:8443/ws", False),
        ("https:///ws", False),
        ("https://host.com.br:99999/ws", False),
    ],
)
def test_script_egress_rule(url: str, ok: bool) -> None:
    assert registry_data.egress_ok(url) is ok


def test_script_egress_port_is_the_platforms() -> None:
    assert {registry_data.EGRESS_PORT} == set(EGRESS_PORTS)
