"""What a component is granted, and the rules on grants that no call needs or that use wildcards.

SAM policy templates are resolved with the actions of nfse_local.iam's table of SAM's
policy_templates.json; inline statements are read as written. Managed policies are listed with
their reasons in MANAGED_POLICY_REASONS.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nfse_local.cfn import walk_refs
from nfse_local.iam import SAM_POLICY_ACTIONS as SAM_POLICY_TEMPLATES
from nfse_local.iam_map.needs import Component, Need, as_list, resource_key

# Managed policies SAM attaches (or the template names), and why each is acceptable.
MANAGED_POLICY_REASONS = {
    "AWSLambdaBasicExecutionRole": "SAM adds it to every function: CreateLogStream/PutLogEvents.",
    "AWSXrayWriteOnlyAccess": "Tracing: Active; X-Ray segment APIs have no resource-level ARNs.",
    "AWSLambdaVPCAccessExecutionRole": "VpcConfig: ENI management has no resource-level ARNs.",
    "AmazonECSTaskExecutionRolePolicy": "ECS execution role: pull the image, write task logs.",
    "AmazonAPIGatewayPushToCloudWatchLogs": "API Gateway account role for stage logging.",
}


@dataclass(frozen=True)
class Grant:
    component: str
    owner: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str | None
    origin: str  # "inline", or the SAM policy template's name


def statements_of(
    template: Mapping[str, Any], component: Component
) -> tuple[list[Grant], list[str]]:
    """(grants, managed policy names) of a component's role."""
    if component.kind in {"function", "state-machine"}:
        return _serverless_statements(template, component)
    return _role_statements(template, component)


def _inline_grants(
    template: Mapping[str, Any], component: Component, statements: Any, owner: str
) -> list[Grant]:
    """The Allow statements of a policy document as written."""
    grants: list[Grant] = []
    for st in as_list(statements):
        if st.get("Effect") != "Allow":
            continue
        keys = tuple(resource_key(template, r) or json.dumps(r) for r in as_list(st["Resource"]))
        actions = tuple(as_list(st["Action"]))
        grants.append(Grant(component.name, owner, actions, keys, st.get("Sid"), "inline"))
    return grants


def _sam_template_grant(template: Mapping[str, Any], component: Component, policy: Any) -> Grant:
    """A SAM policy template, with the actions it expands to, on the resource it names."""
    ((name, params),) = policy.items()
    if name not in SAM_POLICY_TEMPLATES:
        raise ValueError(f"{component.name}: add {name} to SAM_POLICY_TEMPLATES")
    target = resource_key(template, next(iter(params.values()))) or "?"
    actions = SAM_POLICY_TEMPLATES[name]
    return Grant(component.name, component.logical_id, actions, (target,), None, name)


def _serverless_statements(
    template: Mapping[str, Any], component: Component
) -> tuple[list[Grant], list[str]]:
    """A SAM function's or state machine's `Policies`, and the managed policies SAM adds."""
    props = template["Resources"][component.logical_id].get("Properties", {})
    grants: list[Grant] = []
    managed: list[str] = []
    for policy in as_list(props.get("Policies", [])):
        if isinstance(policy, str):
            managed.append(policy.rsplit("/", 1)[-1])
        elif "Statement" in policy:
            grants += _inline_grants(template, component, policy["Statement"], component.logical_id)
        else:
            grants.append(_sam_template_grant(template, component, policy))
    if component.kind == "function":
        globals_fn = template.get("Globals", {}).get("Function", {})
        managed.append("AWSLambdaBasicExecutionRole")
        if props.get("Tracing", globals_fn.get("Tracing")) == "Active":
            managed.append("AWSXrayWriteOnlyAccess")
        if props.get("VpcConfig"):
            managed.append("AWSLambdaVPCAccessExecutionRole")
    elif props.get("Tracing", {}).get("Enabled"):
        managed.append("AWSXrayWriteOnlyAccess")
    return grants, managed


def _role_statements(
    template: Mapping[str, Any], component: Component
) -> tuple[list[Grant], list[str]]:
    """An IAM role's inline policies, the policies attached to it, and its managed policies."""
    resources = template["Resources"]
    role = resources[component.logical_id]["Properties"]
    grants: list[Grant] = []
    for policy in role.get("Policies", []):
        statements = policy["PolicyDocument"]["Statement"]
        grants += _inline_grants(template, component, statements, component.logical_id)
    managed = [str(arn_tail(a)) for a in role.get("ManagedPolicyArns", [])]
    for lid, res in resources.items():
        if res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"} and any(
            component.logical_id in walk_refs(r) for r in res["Properties"].get("Roles", [])
        ):
            statements = res["Properties"]["PolicyDocument"]["Statement"]
            grants += _inline_grants(template, component, statements, lid)
    return grants, managed


def arn_tail(arn: Any) -> str:
    """The policy name at the end of a managed policy ARN."""
    text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else str(arn)
    return str(text).rsplit("/", 1)[-1]


def _matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def is_granted(need: Need, grants: Iterable[Grant]) -> bool:
    return any(
        any(_matches(p, need.action) for p in g.actions)
        and any(r in {need.resource, "*"} for r in g.resources)
        for g in grants
    )


def iam_reasons(template: Mapping[str, Any], owner: str) -> Mapping[str, str]:
    reasons = template["Resources"].get(owner, {}).get("Metadata", {}).get("IamReasons", {})
    return {str(k): str(v) for k, v in reasons.items() if len(str(v).strip()) >= 20}


def unused_grants(template: Mapping[str, Any], needs: set[Need], grants: list[Grant]) -> list[str]:
    """Inline actions (or whole SAM templates) that no call of the component needs."""
    problems: list[str] = []
    for grant in grants:
        if grant.sid and grant.sid in iam_reasons(template, grant.owner):
            continue

        def used(pattern: str, grant: Grant = grant) -> bool:
            return any(
                _matches(pattern, n.action)
                and (n.resource in grant.resources or "*" in grant.resources)
                for n in needs
            )

        if grant.origin == "inline":
            for pattern in grant.actions:
                if not used(pattern):
                    problems.append(
                        f"{grant.component}: {pattern} on {grant.resources} (Sid {grant.sid}) "
                        "is granted but no code needs it"
                    )
        elif not any(used(p) for p in grant.actions):
            problems.append(f"{grant.component}: {grant.origin} on {grant.resources} is unused")
    return problems


def all_allow_statements(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner logical id, statement) of every Allow in roles, policies and key policies."""
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        docs: list[Any] = []
        if res["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            docs += [p for p in as_list(props.get("Policies", [])) if isinstance(p, dict)]
        elif res["Type"] == "AWS::IAM::Role":
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            docs.append(props["PolicyDocument"])
        elif res["Type"] == "AWS::KMS::Key":
            docs.append(props["KeyPolicy"])
        for doc in docs:
            for st in as_list(doc.get("Statement", [])):
                if st.get("Effect") == "Allow":
                    yield lid, st


def unexplained_wildcards(template: Mapping[str, Any]) -> list[str]:
    problems = []
    for owner, st in all_allow_statements(template):
        actions = [str(a) for a in as_list(st.get("Action", []))]
        wild_action = [a for a in actions if a == "*" or a.endswith(":*")]
        wild_resource = "*" in as_list(st.get("Resource", []))
        if (wild_action or wild_resource) and st.get("Sid") not in iam_reasons(template, owner):
            problems.append(
                f"{owner}: statement {st.get('Sid')!r} allows {actions} on "
                f"{st.get('Resource')!r}: give it a Sid and a reason in Metadata.IamReasons"
            )
    return problems
