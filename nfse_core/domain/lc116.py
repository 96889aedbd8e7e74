"""The LC 116/2003 list of services in force (subitems "NN.NN"), their text and national codes.

LC116_ITEMS is the list of subitems in force: the 2003 list less its vetoed subitems, plus
01.09, 06.06, 14.14, 16.02, 17.25 and 25.05 (LC 157/2016) and 11.05 (LC 183/2021). It is a
literal so that importing it reads nothing; tests/unit/test_lc116.py holds it equal to
data/lc116.csv and to the law's list as published (tests/fixtures/lc116/).

data/lc116.csv (read on first use, once per process) gives each subitem's text and its codes
in the national service list of the NFS-e Nacional (Anexo B, cTribNac); its header records
the source. scripts/lc116_data.py regenerates it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path

LC116_ITEMS: frozenset[str] = frozenset({
    "01.01", "01.02", "01.03", "01.04", "01.05", "01.06", "01.07", "01.08", "01.09",
    "02.01",
    "03.02", "03.03", "03.04", "03.05",
    "04.01", "04.02", "04.03", "04.04", "04.05", "04.06", "04.07", "04.08", "04.09", "04.10",
    "04.11", "04.12", "04.13", "04.14", "04.15", "04.16", "04.17", "04.18", "04.19", "04.20",
    "04.21", "04.22", "04.23",
    "05.01", "05.02", "05.03", "05.04", "05.05", "05.06", "05.07", "05.08", "05.09",
    "06.01", "06.02", "06.03", "06.04", "06.05", "06.06",
    "07.01", "07.02", "07.03", "07.04", "07.05", "07.06", "07.07", "07.08", "07.09", "07.10",
    "07.11", "07.12", "07.13", "07.16", "07.17", "07.18", "07.19", "07.20", "07.21", "07.22",
    "08.01", "08.02",
    "09.01", "09.02", "09.03",
    "10.01", "10.02", "10.03", "10.04", "10.05", "10.06", "10.07", "10.08", "10.09", "10.10",
    "11.01", "11.02", "11.03", "11.04", "11.05",
    "12.01", "12.02", "12.03", "12.04", "12.05", "12.06", "12.07", "12.08", "12.09", "12.10",
    "12.11", "12.12", "12.13", "12.14", "12.15", "12.16", "12.17",
    "13.02", "13.03", "13.04", "13.05",
    "14.01", "14.02", "14.03", "14.04", "14.05", "14.06", "14.07", "14.08", "14.09", "14.10",
    "14.11", "14.12", "14.13", "14.14",
    "15.01", "15.02", "15.03", "15.04", "15.05", "15.06", "15.07", "15.08", "15.09", "15.10",
    "15.11", "15.12", "15.13", "15.14", "15.15", "15.16", "15.17", "15.18",
    "16.01", "16.02",
    "17.01", "17.02", "17.03", "17.04", "17.05", "17.06", "17.08", "17.09", "17.10", "17.11",
    "17.12", "17.13", "17.14", "17.15", "17.16", "17.17", "17.18", "17.19", "17.20", "17.21",
    "17.22", "17.23", "17.24", "17.25",
    "18.01",
    "19.01",
    "20.01", "20.02", "20.03",
    "21.01",
    "22.01",
    "23.01",
    "24.01",
    "25.01", "25.02", "25.03", "25.04", "25.05",
    "26.01",
    "27.01",
    "28.01",
    "29.01",
    "30.01",
    "31.01",
    "32.01",
    "33.01",
    "34.01",
    "35.01",
    "36.01",
    "37.01",
    "38.01",
    "39.01",
    "40.01",
})  # fmt: skip

# Subitem numbers of the 2003 list that were vetoed at sanction ("(VETADO)" in Planalto's text
# of LC 116/2003): they name no service and are never accepted.
VETOED_ITEMS: frozenset[str] = frozenset({"03.01", "07.14", "07.15", "13.01", "17.07"})

# Codes the ABRASF 2.04 XSD enumerates that are not subitems in force: none. Every one of its
# 193 values is in LC116_ITEMS; the XSD lacks the seven subitems added since 2016.
XSD_ONLY_ITEMS: frozenset[str] = frozenset()

# The ABRASF 2.04 XSD in the installed nfselib-legacy (the namespaced ISSNET copy, as
# nfse_core.xml.schema uses) and its simpleType of LC 116 items.
_XSD_DISTRIBUTION = "nfselib-legacy"
_XSD_FILE = "schemas/NFSe/ISSNET/nfse_v2-04.xsd"
_XSD_TYPE = "tsItemListaServico"


@dataclass(frozen=True, slots=True)
class _Subitem:
    description: str
    included_by: str
    national_codes: tuple[str, ...]


def data_text() -> str:
    """The shipped lc116.csv as written, header comments included."""
    return resources.files("nfse_core.domain").joinpath("data/lc116.csv").read_text("utf-8")


@cache
def _table() -> dict[str, _Subitem]:
    lines = [line for line in data_text().splitlines() if not line.startswith("#")]
    return {
        row["subitem"]: _Subitem(
            row["descricao"], row["incluido_por"], tuple(row["codigos_nacionais"].split())
        )
        for row in csv.DictReader(lines)
    }


def description(item: str) -> str | None:
    """The law's text of a subitem in force ("01.07"), or None for any other value."""
    found = _table().get(item)
    return None if found is None else found.description


def included_by(item: str) -> str | None:
    """The act that put a subitem in the list ("LC 116/2003", "LC 157/2016", "LC 183/2021")."""
    found = _table().get(item)
    return None if found is None else found.included_by


def national_codes(item: str) -> tuple[str, ...]:
    """Every national code (cTribNac, 6 digits) of a subitem in the NFS-e Nacional list
    (Anexo B), in order; empty for a value that is no subitem in force."""
    found = _table().get(item)
    return () if found is None else found.national_codes


def national_code(item: str) -> str | None:
    """The default cTribNac of a subitem: its one national code when the national service list
    (NFS-e Nacional, Anexo B v1.01) splits it into exactly one desdobro, e.g. "01.07" ->
    "010701". None when the list splits the subitem into several desdobros (e.g. 01.03 into
    010301 processing and 010302 hosting): the choice is the service's, and no public rule
    names one of them the default. None also for a value that is no subitem in force."""
    codes = national_codes(item)
    return codes[0] if len(codes) == 1 else None


@cache
def abrasf_2_04_items() -> frozenset[str]:
    """The values of the tsItemListaServico enumeration of the installed ABRASF 2.04 XSD."""
    path = Path(str(metadata.distribution(_XSD_DISTRIBUTION).locate_file(_XSD_FILE)))
    text = path.read_text(encoding="utf-8")
    block = re.search(
        rf'<(\w+:)?simpleType\s+name="{_XSD_TYPE}"\s*>(.*?)</(\w+:)?simpleType>', text, re.S
    )
    if block is None:
        raise LookupError(f"no simpleType {_XSD_TYPE} in {path}")
    return frozenset(re.findall(r'<(?:\w+:)?enumeration\s+value="([^"]+)"', block.group(2)))
