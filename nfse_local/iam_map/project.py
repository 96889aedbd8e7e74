"""The IAM map of this repository: template.yaml's components, the calls their code makes, and
the gaps between those calls and the policies the template grants."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import aws_lambda_powertools.utilities.idempotency.persistence.dynamodb as powertools_dynamodb

from nfse_local.cfn import load_template, walk_refs
from nfse_local.iam_map.grants import (
    MANAGED_POLICY_REASONS,
    is_granted,
    statements_of,
    unexplained_wildcards,
    unused_grants,
)
from nfse_local.iam_map.needs import Component, Need, needs_of_calls, needs_of_state_machine
from nfse_local.iam_map.sources import SourceIndex, build_index, settings_aliases

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
PACKAGES = ("nfse_core", "functions", "adapters_service")
CONFIG_PATH = ROOT / "nfse_core" / "config.py"

# Third-party classes that make AWS calls with a client we hand them. Their AWS calls all count
# once the class is constructed by reached code (we do not follow their internals).
EXTERNAL_ADAPTERS = (Path(powertools_dynamodb.__file__),)


class UnplacedCalls(Exception):
    """Some AWS calls of a component could not be placed on a template resource."""


@cache
def template() -> dict[str, Any]:
    """template.yaml, loaded once."""
    return load_template(TEMPLATE_PATH)


@cache
def aliases() -> dict[str, str]:
    """settings field -> environment variable, from nfse_core/config.py."""
    return settings_aliases(CONFIG_PATH)


@cache
def index() -> SourceIndex:
    """The parsed sources of the packages the template deploys (and the external adapters)."""
    return build_index(ROOT, PACKAGES, aliases(), EXTERNAL_ADAPTERS)


def _function_env(tpl: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    globals_env = tpl.get("Globals", {}).get("Function", {}).get("Environment", {})
    own = tpl["Resources"][logical_id]["Properties"].get("Environment", {})
    return {**globals_env.get("Variables", {}), **own.get("Variables", {})}


def components(tpl: Mapping[str, Any]) -> dict[str, Component]:
    """The code components of a template by name: every function, state machine and ECS task
    role (whose code is the worker image's entry point)."""
    found: dict[str, Component] = {}
    for lid, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            module = str(props["Handler"]).rpartition(".")[0]
            code = str(props["CodeUri"]).strip("/").replace("/", ".")
            found[lid] = Component(
                lid, "function", lid, (f"{code}.{module}",), _function_env(tpl, lid)
            )
        elif res["Type"] == "AWS::Serverless::StateMachine":
            found[lid] = Component(lid, "state-machine", lid)
        elif res["Type"] == "AWS::ECS::TaskDefinition":
            (role,) = set(walk_refs(props["TaskRoleArn"]))
            env = {e["Name"]: e["Value"] for e in props["ContainerDefinitions"][0]["Environment"]}
            # The image's ENTRYPOINT: python -m adapters_service.
            found[role] = Component(role, "role", role, ("adapters_service.__main__",), env)
    return found


@cache
def _needs_of_real(name: str) -> tuple[frozenset[Need], tuple[str, ...]]:
    component = components(template())[name]
    if component.kind == "state-machine":
        needs, problems = needs_of_state_machine(template(), ROOT, component)
    else:
        needs, problems = needs_of_calls(template(), index(), aliases(), component)
    return frozenset(needs), tuple(problems)


def needs_of(name: str) -> tuple[set[Need], list[str]]:
    """(needs, calls that cannot be placed) of a component of template.yaml."""
    needs, problems = _needs_of_real(name)
    return set(needs), list(problems)


@cache
def the_map() -> dict[str, set[Need]]:
    """component -> what it needs; raises UnplacedCalls if a call cannot be placed."""
    out: dict[str, set[Need]] = {}
    for name in components(template()):
        needs, problems = needs_of(name)
        if problems:
            raise UnplacedCalls(problems)
        out[name] = needs
    return out


def render_map() -> str:
    """The Markdown table of docs/security.md."""
    lines = ["| component | action | resource |", "|---|---|---|"]
    for name in sorted(the_map()):
        for need in sorted(the_map()[name]):
            lines.append(f"| {name} | `{need.action}` | {need.resource} |")
    return "\n".join(lines)


def gaps() -> list[str]:
    """Every rule the template breaks: calls not placed or not granted, grants no call needs,
    managed policies and wildcards without a reason. Empty when the template is least privilege."""
    tpl = template()
    problems: list[str] = []
    for name, component in sorted(components(tpl).items()):
        needs, unplaced = needs_of(name)
        problems += unplaced
        grants, managed = statements_of(tpl, component)
        problems += [
            f"{name}: {n.action} on {n.resource} is not granted ({n.why})"
            for n in sorted(needs)
            if not is_granted(n, grants)
        ]
        problems += unused_grants(tpl, needs, grants)
        problems += [
            f"{name}: managed policy {m} has no reason in MANAGED_POLICY_REASONS"
            for m in managed
            if m not in MANAGED_POLICY_REASONS
        ]
    return problems + unexplained_wildcards(tpl)
