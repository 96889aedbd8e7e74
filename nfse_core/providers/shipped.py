"""The provider registry file packaged with the code (data/providers.json), as written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any


@cache
def shipped_data() -> Mapping[str, Any]:
    """The packaged providers.json as written (profiles and entries before merging), read once
    per process."""
    text = resources.files("nfse_core.providers").joinpath("data/providers.json").read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    return raw
