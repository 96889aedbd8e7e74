"""The real IBGE municipality codes, their UF and their time zone (data/municipios.csv).

The file is read on first use, once per process. Its header records its source
(kelvins/municipios-brasileiros, which republishes the IBGE's DTB), commit and date;
scripts/municipios_data.py regenerates it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import timedelta, timezone, tzinfo
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SOURCE = (
    "kelvins/municipios-brasileiros csv/municipios.csv at commit "
    "503e2f70bbf1b4b7ec0b1f68b09086ccc38fe861 (2025-12-10); authority: IBGE DTB"
)

# Brazil's legal time offsets (Decreto 2.784/1913 as amended by Lei 12.876/2013: UTC-2 for the
# oceanic islands, UTC-3 for Brasília's zone, UTC-4 and UTC-5 for the west), with no daylight
# saving since Decreto 9.772/2019. Used only when the tz database is missing.
_FIXED_OFFSET_HOURS = {
    "America/Noronha": -2,
    "America/Araguaina": -3,
    "America/Bahia": -3,
    "America/Belem": -3,
    "America/Fortaleza": -3,
    "America/Maceio": -3,
    "America/Recife": -3,
    "America/Santarem": -3,
    "America/Sao_Paulo": -3,
    "America/Boa_Vista": -4,
    "America/Campo_Grande": -4,
    "America/Cuiaba": -4,
    "America/Manaus": -4,
    "America/Porto_Velho": -4,
    "America/Eirunepe": -5,
    "America/Rio_Branco": -5,
}


@dataclass(frozen=True, slots=True)
class Municipality:
    """One IBGE municipality: 7-digit code, name, UF abbreviation and IANA zone."""

    code: str
    name: str
    uf: str
    zone: str


def data_text() -> str:
    """The shipped municipios.csv as written, header comments included."""
    return resources.files("nfse_core.domain").joinpath("data/municipios.csv").read_text("utf-8")


@cache
def _table() -> dict[str, Municipality]:
    lines = [line for line in data_text().splitlines() if not line.startswith("#")]
    return {
        row["codigo_ibge"]: Municipality(
            row["codigo_ibge"], row["nome"], row["uf"], row["fuso_horario"]
        )
        for row in csv.DictReader(lines)
    }


def municipality(code: str) -> Municipality | None:
    """The municipality with this IBGE code, or None when no municipality has it."""
    return _table().get(code)


@cache
def municipality_codes() -> frozenset[str]:
    """Every IBGE municipality code in the data file."""
    return frozenset(_table())


@cache
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        hours = _FIXED_OFFSET_HOURS[name]
        return timezone(timedelta(hours=hours), name)


def zone_of(code: str) -> tzinfo:
    """The time zone of the municipality with this IBGE code (ZoneInfo; a fixed offset of the
    same UTC offset when the tz database is missing). ValueError for an unknown code."""
    found = municipality(code)
    if found is None:
        raise ValueError(f"not an IBGE municipality code: {code!r}")
    return _zone(found.zone)
