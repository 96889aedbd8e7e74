"""The LC 116/2003 list in force (nfse_core.domain.lc116, data/lc116.csv) against the law."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from nfse_core.domain import lc116
from nfse_core.xml.schema import schema_path

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lc116" / "lista_servicos_lc116.txt"
XSD_NS = {"xsd": "http://www.w3.org/2001/XMLSchema"}
ADDED_SINCE_2016 = {
    "01.09": "LC 157/2016",
    "06.06": "LC 157/2016",
    "14.14": "LC 157/2016",
    "16.02": "LC 157/2016",
    "17.25": "LC 157/2016",
    "25.05": "LC 157/2016",
    "11.05": "LC 183/2021",
}
VETOED = {"03.01", "07.14", "07.15", "13.01", "17.07"}


def law() -> dict[str, str]:
    """The fixture: subitem number -> the act that included it, or VETADO."""
    entries = {}
    for line in FIXTURE.read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            number, status = line.split(" ", 1)
            assert number not in entries
            entries[number] = status
    return entries


def data_rows() -> list[dict[str, str]]:
    lines = [line for line in lc116.data_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def xsd_enumeration() -> set[str]:
    values = etree.parse(str(schema_path())).xpath(
        '//xsd:simpleType[@name="tsItemListaServico"]//xsd:enumeration/@value',
        namespaces=XSD_NS,
    )
    assert isinstance(values, list)
    assert len(values) == len(set(values))
    return {str(v) for v in values}


def test_fixture_is_the_published_list() -> None:
    entries = law()
    assert len(entries) == 205
    assert {n for n, s in entries.items() if s == "VETADO"} == VETOED
    assert "planalto.gov.br/ccivil_03/leis/lcp/lcp116.htm" in FIXTURE.read_text("utf-8")
    # Subitems are numbered 01, 02, ... without gaps within each item 1-40.
    by_item: dict[str, list[int]] = {}
    for number in entries:
        item, sub = number.split(".")
        by_item.setdefault(item, []).append(int(sub))
    assert sorted(by_item) == [f"{i:02d}" for i in range(1, 41)]
    assert all(subs == list(range(1, len(subs) + 1)) for subs in by_item.values())


def test_items_in_force_are_the_laws_list() -> None:
    in_force = {n for n, s in law().items() if s != "VETADO"}
    assert len(in_force) == 200
    assert in_force == lc116.LC116_ITEMS


def test_data_file_agrees_with_the_constant_and_the_law() -> None:
    rows = data_rows()
    assert [r["subitem"] for r in rows] == sorted(lc116.LC116_ITEMS)
    entries = law()
    assert {r["subitem"]: r["incluido_por"] for r in rows} == {
        n: s for n, s in entries.items() if s != "VETADO"
    }
    assert all(r["descricao"].strip() for r in rows)


def test_the_seven_added_subitems_are_in_force() -> None:
    for item, act in ADDED_SINCE_2016.items():
        assert item in lc116.LC116_ITEMS
        assert lc116.included_by(item) == act


def test_vetoed_subitems_are_not_accepted() -> None:
    assert lc116.VETOED_ITEMS == VETOED
    for item in VETOED:
        assert item not in lc116.LC116_ITEMS
        assert lc116.description(item) is None
        assert lc116.national_code(item) is None


def test_xsd_items_are_law_items_and_lack_exactly_the_seven() -> None:
    xsd = xsd_enumeration()
    assert len(xsd) == 193
    assert xsd - lc116.LC116_ITEMS == set(lc116.XSD_ONLY_ITEMS) == set()
    assert lc116.LC116_ITEMS - xsd == set(ADDED_SINCE_2016)
    assert not xsd & VETOED


def test_abrasf_2_04_items_reads_the_installed_xsd() -> None:
    assert lc116.abrasf_2_04_items() == xsd_enumeration()
    assert "01.09" not in lc116.abrasf_2_04_items()
    assert "01.07" in lc116.abrasf_2_04_items()


@pytest.mark.parametrize(
    ("item", "text"),
    [
        ("01.07", "Suporte técnico em informática, inclusive instalação, configuração e "
         "manutenção de programas de computação e bancos de dados."),
        ("06.06", "Aplicação de tatuagens, piercings e congêneres."),
        ("16.02", "Outros serviços de transporte de natureza municipal."),
        ("25.05", "Cessão de uso de espaços em cemitérios para sepultamento."),
        ("14.14", "Guincho intramunicipal, guindaste e içamento."),
    ],
)  # fmt: skip
def test_description_is_the_laws_text(item: str, text: str) -> None:
    assert lc116.description(item) == text


@pytest.mark.parametrize("value", ["99.99", "99.01", "1.07", "0107", "", "03.01"])
def test_description_of_a_non_item_is_none(value: str) -> None:
    assert lc116.description(value) is None
    assert lc116.national_codes(value) == ()


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ("01.07", "010701"),  # one desdobro: its code
        ("02.01", "020101"),
        ("11.05", "110501"),
        ("17.25", "172501"),
        ("40.01", "400101"),
        ("01.03", None),  # 010301 processing, 010302 hosting: no documented default
        ("07.02", None),
        ("14.14", None),
        ("99.01", None),  # national-list code for no ISS, not an LC 116 subitem
    ],
)
def test_national_code(item: str, code: str | None) -> None:
    assert lc116.national_code(item) == code


def test_national_codes_are_item_subitem_desdobro() -> None:
    total = 0
    single = 0
    for item in lc116.LC116_ITEMS:
        codes = lc116.national_codes(item)
        assert codes, item
        total += len(codes)
        single += len(codes) == 1
        for code in codes:
            assert len(code) == 6
            assert code.isdigit()
            assert f"{code[:2]}.{code[2:4]}" == item
            assert code[4:] != "00"
    assert (total, single) == (337, 138)
    assert lc116.national_codes("14.14") == ("141401", "141402", "141403", "141404")


def test_header_records_the_source() -> None:
    header = "\n".join(s for s in lc116.data_text().splitlines() if s.startswith("#"))
    assert "anexo_b-nbs2-lista_servico_nacional-snnfse-v1-01-20260122.xlsx" in header
    assert "rafael-negrao/nfse-nacional-service" in header
    assert "1c42367a4e5bb5078b972f3f916b8b96d537b454" in header
    assert "Rows: 200 subitems" in header


def test_nothing_is_read_at_import() -> None:
    code = (
        "import sys; import nfse_core.domain.lc116 as m; "
        "assert m._table.cache_info().currsize == 0; "
        "assert m.abrasf_2_04_items.cache_info().currsize == 0; "
        "assert 'lxml.etree' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
