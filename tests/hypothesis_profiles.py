"""Hypothesis profiles: `suite` for `make test`, `thorough` for `make fuzz` and `make reliability`.

HYPOTHESIS_PROFILE=thorough (or pytest's `--hypothesis-profile=thorough`) selects the thorough
one; the default is `suite`. A property states its thorough example count in place with
`examples(n)`: the thorough profile runs n examples, the suite a share of them (n / 8, at least
25, never more than n). schemathesis takes its counts from the same helper.
"""

from __future__ import annotations

import os

from hypothesis import settings

SUITE = "suite"
THOROUGH = "thorough"
SUITE_SHARE = 8
SUITE_MINIMUM = 25

settings.register_profile(SUITE, settings())
settings.register_profile(THOROUGH, settings())
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", SUITE))


def thorough() -> bool:
    """True when the thorough profile is the one loaded."""
    return settings.get_current_profile_name() == THOROUGH


def examples(count: int) -> int:
    """`count` under the thorough profile; under the suite, its share (see the module doc)."""
    if thorough():
        return count
    return min(count, max(SUITE_MINIMUM, count // SUITE_SHARE))
