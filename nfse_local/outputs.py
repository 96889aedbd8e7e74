"""A deployed stack's outputs as the admin commands need them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def missing_outputs_problem(outputs: Mapping[str, str], names: Iterable[str]) -> str | None:
    """Why `outputs` lacks what a command needs (the names it has not, or has empty), or None."""
    missing = [name for name in names if not outputs.get(name)]
    if not missing:
        return None
    return f"the stack has no {', '.join(missing)} output: deploy the current template.yaml"
