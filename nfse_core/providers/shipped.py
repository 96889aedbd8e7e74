"""The provider registry packaged with the code, as written: data/providers.json (profiles, the
simulators, hand-written entries) and data/municipalities.csv (the real municipalities of each
ABRASF provider family, with the source and date of each row; docs/registry-sources.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

_DATA = resources.files("nfse_core.providers").joinpath("data")


def _entry(row: Mapping[str, str]) -> dict[str, Any]:
    """A municipalities.csv row as a registry entry: its family is the profile; empty endpoint
    columns leave the family's shared URLs (Betha's) in place."""
    entry: dict[str, Any] = {
        "name": f"{row['name']}/{row['uf']}",
        "profile": row["family"],
        "notes": f"provider {row['provider']}",
        "source": row["source"],
        "updated": row.get("updated", ""),
    }
    endpoints = {
        environment: row[environment]
        for environment in ("producao", "homologacao")
        if row.get(environment)
    }
    if endpoints:
        entry["endpoints"] = endpoints
    return entry


def municipality_rows() -> list[dict[str, str]]:
    """The rows of data/municipalities.csv (empty when the file is absent)."""
    path = _DATA.joinpath("municipalities.csv")
    if not path.is_file():
        return []
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))


@cache
def shipped_data() -> Mapping[str, Any]:
    """The packaged registry as written (profiles and entries before merging), read once per
    process: providers.json, with the rows of municipalities.csv added to its `municipios` (an
    entry written in providers.json wins over a row of the same code). A row whose family has
    no profile (no adapter: GINFES) is not an entry; `unsupported_families` names it."""
    raw: dict[str, Any] = json.loads(_DATA.joinpath("providers.json").read_text("utf-8"))
    profiles = raw.get("profiles", {})
    rows = {row["ibge"]: _entry(row) for row in municipality_rows() if row["family"] in profiles}
    raw["municipios"] = rows | raw.get("municipios", {})
    return raw


@cache
def unsupported_families() -> Mapping[str, tuple[str, str]]:
    """IBGE code -> (family, provider) of the municipalities the shipped data knows to be on a
    provider family no adapter speaks (a POST there is refused, naming the family)."""
    profiles = json.loads(_DATA.joinpath("providers.json").read_text("utf-8")).get("profiles", {})
    return {
        row["ibge"]: (row["family"], row["provider"])
        for row in municipality_rows()
        if row["family"] not in profiles
    }
