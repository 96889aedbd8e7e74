"""What a component needs: each AWS call placed on a template resource, as an IAM action.

A call's resource comes from the settings fields its class was built with: nfse_core/config.py
names each field's environment variable, and the template sets that variable to a
`!Ref`/`!GetAtt` of the resource (or a parameter, for the certificate secrets' prefix). Some
calls imply others (IMPLIED: the Data API reads the DB secret as the caller), and every call on
a KMS-encrypted resource needs the key (kms:Decrypt; writes also kms:GenerateDataKey). The state
machine's needs are its ASL Task integrations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfse_local.cfn import walk_refs
from nfse_local.iam_map.reach import bound_fields, reach
from nfse_local.iam_map.sources import SourceIndex

# Operations whose answer for a missing key depends on s3:ListBucket (see needs_of_calls).
EXISTENCE_CHECKS = frozenset({"head_object"})

# Calls that make the service act with the caller's credentials on another resource.
# action -> (implied action, settings field of the same construction that names the resource)
IMPLIED = {"rds-data:ExecuteStatement": (("secretsmanager:GetSecretValue", "secret_arn"),)}

WRITES = frozenset(
    {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "s3:PutObject",
        "sqs:SendMessage",
    }
)
# Calls that never read or write an encrypted payload.
NO_KMS = frozenset({"sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "states:StartExecution"})

RESOURCE_KINDS = {
    "AWS::DynamoDB::Table": "dynamodb",
    "AWS::S3::Bucket": "s3",
    "AWS::SQS::Queue": "sqs",
    "AWS::Serverless::StateMachine": "states",
    "AWS::StepFunctions::StateMachine": "states",
    "AWS::RDS::DBCluster": "rds-data",
    "AWS::SecretsManager::Secret": "secretsmanager",
    "AWS::KMS::Key": "kms",
}
_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")
_INTEGRATION = re.compile(r"arn:aws:states:::([a-z0-9-]+):(\w+)(\..+)?")


@dataclass(frozen=True, order=True)
class Need:
    component: str
    action: str
    resource: str
    why: str = field(compare=False)


@dataclass(frozen=True)
class Component:
    name: str
    kind: str  # "function", "role" or "state-machine"
    logical_id: str
    entries: tuple[str, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)


def resource_key(template: Mapping[str, Any], value: Any) -> str | None:
    """What a policy Resource / env value / template parameter refers to, as a map key."""
    if value == "*":
        return "*"
    if not (isinstance(value, dict) and len(value) == 1):
        return None
    ((fn, arg),) = value.items()
    reader = _KEY_READERS.get(fn)
    return reader(template, arg) if reader else None


def _ref_key(template: Mapping[str, Any], arg: Any) -> str | None:
    if arg in template.get("Resources", {}):
        return str(arg)
    return f"param:{arg}" if arg in template.get("Parameters", {}) else None


def _get_att_key(template: Mapping[str, Any], arg: Any) -> str | None:
    name, attr = (arg if isinstance(arg, list) else str(arg).split(".", 1))[:2]
    if str(attr).endswith(".SecretArn"):
        return f"{name}.{str(attr).rsplit('.', 1)[0]}"
    return str(name)


def _sub_key(template: Mapping[str, Any], arg: Any) -> str | None:
    """The first variable of a Fn::Sub that names a resource or a parameter."""
    text = arg[0] if isinstance(arg, list) else arg
    inner = arg[1] if isinstance(arg, list) and len(arg) > 1 else {}
    for var in _SUB_VAR.findall(str(text)):
        if var in inner:
            return resource_key(template, inner[var])
        name = str(var).split(".", 1)[0]
        if name in template.get("Resources", {}):
            return name
        if name in template.get("Parameters", {}):
            return f"param:{name}"
    return None


_KEY_READERS: dict[str, Callable[[Mapping[str, Any], Any], str | None]] = {
    "Ref": _ref_key,
    "Fn::GetAtt": _get_att_key,
    "Fn::Sub": _sub_key,
}


def resource_kind(template: Mapping[str, Any], key: str) -> str | None:
    if key.startswith("param:"):
        # Convention: a parameter named *SecretPrefix / *SecretName / *SecretArn names secrets.
        return "secretsmanager" if re.search(r"Secret(Prefix|Name|Arn)$", key) else None
    if key.endswith(".MasterUserSecret"):
        return "secretsmanager"
    resource = template.get("Resources", {}).get(key)
    return RESOURCE_KINDS.get(resource["Type"]) if resource else None


def encryption_key(template: Mapping[str, Any], key: str) -> str | None:
    """The stack's KMS key that encrypts a resource, if any."""
    resources = template.get("Resources", {})
    keys = {lid for lid, r in resources.items() if r["Type"] == "AWS::KMS::Key"}
    if key.startswith("param:"):
        # Secrets made outside the stack: the parameter's description says which key.
        description = str(template.get("Parameters", {}).get(key[6:], {}).get("Description", ""))
        return next((k for k in keys if f"{k}Arn" in description), None)
    name, _, sub = key.partition(".")
    props = resources.get(name, {}).get("Properties", {})
    setting: Any = {
        "AWS::DynamoDB::Table": props.get("SSESpecification", {}).get("KMSMasterKeyId"),
        "AWS::S3::Bucket": props.get("BucketEncryption"),
        "AWS::SQS::Queue": props.get("KmsMasterKeyId"),
        "AWS::SecretsManager::Secret": props.get("KmsKeyId"),
    }.get(resources.get(name, {}).get("Type", ""))
    if sub == "MasterUserSecret":
        setting = props.get("MasterUserSecret", {}).get("KmsKeyId")
    return next((ref for ref in walk_refs(setting) if ref in keys), None)


def needs_of_calls(
    template: Mapping[str, Any],
    index: SourceIndex,
    aliases: Mapping[str, str],
    component: Component,
) -> tuple[set[Need], list[str]]:
    """(needs, problems) of a code component; a problem is a call the map cannot place."""
    found = reach(index, list(component.entries))
    needs: set[Need] = set()
    problems: list[str] = []
    for call in found.calls():
        where = f"{call.where}:{call.line} .{call.op}()"
        fields = bound_fields(found, call.cls) if call.cls else set()
        targets: dict[str, str] = {}  # resource -> field
        for name in sorted(fields):
            env = aliases.get(name)
            if env is not None and env in component.env:
                key = resource_key(template, component.env[env])
                if key is not None:
                    targets[key] = name
        candidates = [
            (prefix, key)
            for prefix in index.boto_ops[call.op]
            for key in targets
            if resource_kind(template, key) == prefix
        ]
        if len(candidates) != 1:
            problems.append(f"{component.name}: cannot tell the resource of {where}: {targets}")
            continue
        prefix, key = candidates[0]
        action = index.operations[(prefix, call.op)]
        needs.add(Need(component.name, action, key, where))
        if call.op in EXISTENCE_CHECKS:
            # Asking S3 whether a key exists: for a missing key S3 answers 404 only to a
            # caller allowed s3:ListBucket on the bucket, 403 otherwise. (The defect that
            # stopped every first delivery: the worker's HeadObject without it. moto answers
            # 404 either way; the local stack's S3 patch and this rule catch it.)
            needs.add(Need(component.name, "s3:ListBucket", key, f"{where} (404, not 403)"))
        for implied, field_name in IMPLIED.get(action, ()):
            env = aliases.get(field_name)
            value = component.env.get(env) if env else None
            implied_key = resource_key(template, value) if value is not None else None
            if implied_key is None:
                problems.append(f"{component.name}: {where} implies {implied}: no {field_name}")
            else:
                needs.add(Need(component.name, implied, implied_key, f"{where} (implied)"))
    return add_kms(template, needs), problems


def add_kms(template: Mapping[str, Any], needs: set[Need]) -> set[Need]:
    out = set(needs)
    for need in needs:
        kms = encryption_key(template, need.resource)
        if kms is None or need.action in NO_KMS:
            continue
        why = f"{need.action} on {need.resource}"
        out.add(Need(need.component, "kms:Decrypt", kms, why))
        if need.action in WRITES:
            out.add(Need(need.component, "kms:GenerateDataKey", kms, why))
    return out


def needs_of_state_machine(
    template: Mapping[str, Any], root: Path, component: Component
) -> tuple[set[Need], list[str]]:
    """Service integrations of the ASL: arn:aws:states:::<service>:<api>[.sync]."""
    props = template["Resources"][component.logical_id]["Properties"]
    asl = json.loads((root / str(props["DefinitionUri"])).read_text(encoding="utf-8"))
    substitutions = props.get("DefinitionSubstitutions", {})
    needs: set[Need] = set()
    problems: list[str] = []
    for name, state in asl.get("States", {}).items():
        match = _INTEGRATION.fullmatch(state.get("Resource", ""))
        if state.get("Type") != "Task" or not match:
            continue
        service, api = match.group(1), match.group(2)
        action = f"{service}:{api[0].upper()}{api[1:]}"
        keys = {
            resource_key(template, substitutions.get(var))
            for value in state.get("Parameters", {}).values()
            if isinstance(value, str)
            for var in _SUB_VAR.findall(value)
        } - {None}
        matching = [k for k in keys if k and resource_kind(template, k) == service]
        if len(matching) != 1:
            problems.append(f"{component.name}: state {name}: resource of {action}? {keys}")
            continue
        needs.add(Need(component.name, action, matching[0], f"ASL state {name}"))
    return add_kms(template, needs), problems


def as_list(value: Any) -> list[Any]:
    """A template value that may be one item or a list of them, as a list."""
    return value if isinstance(value, list) else [value]
