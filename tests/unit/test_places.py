"""The municipality data (nfse_core.domain.places, data/municipios.csv): codes, UFs, zones."""

from __future__ import annotations

import subprocess
import sys
import zoneinfo
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from brazilnum.muni import SHIM, validate_muni

from nfse_core.domain import places

pytestmark = pytest.mark.unit

# IBGE UF codes: the first two digits of every municipality code of the UF.
UF_PREFIX = {
    "RO": "11", "AC": "12", "AM": "13", "RR": "14", "PA": "15", "AP": "16", "TO": "17",
    "MA": "21", "PI": "22", "CE": "23", "RN": "24", "PB": "25", "PE": "26", "AL": "27",
    "SE": "28", "BA": "29", "MG": "31", "ES": "32", "RJ": "33", "SP": "35", "PR": "41",
    "SC": "42", "RS": "43", "MS": "50", "MT": "51", "GO": "52", "DF": "53",
}  # fmt: skip

# Legal offsets (hours from UTC) of the UFs wholly in one zone: Decreto 2.784/1913 art. 2 as
# amended by Lei 12.876/2013; no daylight saving since Decreto 9.772/2019. AM and PE are split.
UF_OFFSET = {
    **dict.fromkeys(
        ["DF", "RS", "SC", "PR", "SP", "RJ", "MG", "ES", "GO", "TO", "BA", "SE", "AL", "PB",
         "RN", "CE", "PI", "MA", "PA", "AP"],
        -3,
    ),
    **dict.fromkeys(["MT", "MS", "RO", "RR"], -4),
    "AC": -5,
}  # fmt: skip

# Amazonas west of the Tabatinga - Porto Acre line (Lei 12.876/2013): UTC-5; the rest UTC-4.
AM_UTC_MINUS_5 = {
    "1300201": "Atalaia do Norte",
    "1300607": "Benjamin Constant",
    "1300706": "Boca do Acre",
    "1301407": "Eirunepé",
    "1301506": "Envira",
    "1301654": "Guajará",
    "1301803": "Ipixuna",
    "1301951": "Itamarati",
    "1302306": "Jutaí",
    "1302405": "Lábrea",
    "1303502": "Pauini",
    "1303908": "São Paulo de Olivença",
    "1304062": "Tabatinga",
}

FERNANDO_DE_NORONHA = "2605459"
# A winter and a summer instant: with no daylight saving, both give the same offset.
INSTANTS = (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC))


def offset_hours(code: str) -> set[float]:
    zone = places.zone_of(code)
    return {
        delta.total_seconds() / 3600
        for delta in (t.astimezone(zone).utcoffset() for t in INSTANTS)
        if delta is not None
    }


def test_count_is_5571() -> None:
    assert len(places.municipality_codes()) == 5571


def test_boa_esperanca_do_norte_is_present_in_mt() -> None:
    found = places.municipality("5101837")
    assert found is not None
    assert (found.name, found.uf) == ("Boa Esperança do Norte", "MT")


@pytest.mark.parametrize("code", ["3500006", "5300009"])
def test_codes_with_a_valid_check_digit_that_are_not_municipalities(code: str) -> None:
    assert validate_muni(code)
    assert places.municipality(code) is None
    assert code not in places.municipality_codes()


def test_every_code_passes_the_check_digit_rule() -> None:
    assert [c for c in places.municipality_codes() if not validate_muni(c)] == []


def test_the_nine_codes_with_a_wrong_check_digit_are_real() -> None:
    assert len(SHIM) == 9
    assert set(SHIM) <= places.municipality_codes()


def test_every_code_starts_with_its_ufs_prefix() -> None:
    for code in places.municipality_codes():
        found = places.municipality(code)
        assert found is not None
        assert code[:2] == UF_PREFIX[found.uf], found
    assert {m.uf for m in map(places.municipality, places.municipality_codes()) if m} == set(
        UF_PREFIX
    )


def test_municipality_record() -> None:
    assert places.municipality("3550308") == places.Municipality(
        "3550308", "São Paulo", "SP", "America/Sao_Paulo"
    )
    assert places.municipality("") is None
    assert places.municipality("355030") is None


def test_every_acre_municipality_is_utc_minus_5() -> None:
    acre = [c for c in places.municipality_codes() if c.startswith("12")]
    assert len(acre) == 22
    assert all(offset_hours(c) == {-5} for c in acre)


def test_fernando_de_noronha_is_utc_minus_2() -> None:
    found = places.municipality(FERNANDO_DE_NORONHA)
    assert found is not None
    assert found.zone == "America/Noronha"
    assert offset_hours(FERNANDO_DE_NORONHA) == {-2}


def test_every_uf_in_one_zone_has_its_legal_offset() -> None:
    zones_by_uf: dict[str, set[str]] = defaultdict(set)
    for code in places.municipality_codes():
        found = places.municipality(code)
        assert found is not None
        zones_by_uf[found.uf].add(found.zone)
        if found.uf in UF_OFFSET:
            assert offset_hours(code) == {UF_OFFSET[found.uf]}, found
    assert all(len(zones_by_uf[uf]) == 1 for uf in UF_OFFSET)


def test_amazonas_is_split_along_the_tabatinga_porto_acre_line() -> None:
    amazonas = [c for c in places.municipality_codes() if c.startswith("13")]
    west = {c for c in amazonas if offset_hours(c) == {-5}}
    east = {c for c in amazonas if offset_hours(c) == {-4}}
    assert west == set(AM_UTC_MINUS_5)
    assert west | east == set(amazonas)
    for code, name in AM_UTC_MINUS_5.items():
        found = places.municipality(code)
        assert found is not None
        assert found.name == name


def test_pernambuco_outside_noronha_is_utc_minus_3() -> None:
    pe = [c for c in places.municipality_codes() if c.startswith("26")]
    assert all(offset_hours(c) == {-3} for c in pe if c != FERNANDO_DE_NORONHA)


def test_zone_of_is_a_zoneinfo() -> None:
    assert places.zone_of("1200401") == ZoneInfo("America/Rio_Branco")


def test_zone_of_an_unknown_code_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="3500006"):
        places.zone_of("3500006")


def test_zone_falls_back_to_a_fixed_offset_without_the_tz_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(key: str) -> ZoneInfo:
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(places, "ZoneInfo", missing)
    places._zone.cache_clear()
    try:
        for code, hours in (("2605459", -2), ("3550308", -3), ("5101837", -4), ("1200401", -5)):
            zone = places.zone_of(code)
            assert not isinstance(zone, ZoneInfo)
            assert zone.utcoffset(INSTANTS[0]) == timedelta(hours=hours)
    finally:
        places._zone.cache_clear()


def test_header_records_source_commit_date_and_authority() -> None:
    header = [line for line in places.data_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "kelvins/municipios-brasileiros" in text
    assert "503e2f70bbf1b4b7ec0b1f68b09086ccc38fe861" in text
    assert "2025-12-10" in text
    assert "IBGE" in text
    assert "MIT" in text
    assert "Rows: 5571" in text
    for part in ("kelvins/municipios-brasileiros", "503e2f70bbf1b4b7ec0b1f68b09086ccc38fe861"):
        assert part in places.SOURCE


def test_nothing_is_read_at_import() -> None:
    code = (
        "import nfse_core.domain.places as p; "
        "assert p._table.cache_info().currsize == 0; "
        "assert p.municipality_codes.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
