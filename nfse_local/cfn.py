"""template.yaml for the local stack: a YAML loader for CloudFormation's short tags and a small
resolver of the intrinsic functions, so moto resources are made from the template itself.

The loader turns `!Ref X` into `{"Ref": "X"}` and `!Sub ...` into `{"Fn::Sub": ...}` (the long
form CloudFormation itself uses). The resolver knows parameters (defaults and overrides),
conditions, pseudo parameters and the resources created so far; asking it for anything else
raises `Unresolvable`, never a silent placeholder. `resolve_template` resolves the whole template
for given parameters without creating anything (resources stay symbolic `ResourceRef`s), and
evaluates its Rules: tests/unit/test_template_environments.py checks what CloudFormation would
create in every samconfig environment.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Short tag -> long form key. Fn::GetAtt's scalar form "A.B" becomes ["A", "B"].
_TAGS: dict[str, str] = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Select": "Fn::Select",
    "!Join": "Fn::Join",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!ImportValue": "Fn::ImportValue",
    "!Base64": "Fn::Base64",
    "!GetAZs": "Fn::GetAZs",
    "!Cidr": "Fn::Cidr",
    "!Transform": "Fn::Transform",
    "!Length": "Fn::Length",
    "!ToJsonString": "Fn::ToJsonString",
    # Rules-only functions.
    "!Contains": "Fn::Contains",
    "!EachMemberEquals": "Fn::EachMemberEquals",
    "!EachMemberIn": "Fn::EachMemberIn",
    "!RefAll": "Fn::RefAll",
    "!ValueOf": "Fn::ValueOf",
    "!ValueOfAll": "Fn::ValueOfAll",
}

NO_VALUE = "AWS::NoValue"


class CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that also reads CloudFormation's short intrinsic-function tags."""


def _constructor(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if key == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:  # pragma: no cover - yaml has no other node kinds
            raise yaml.constructor.ConstructorError(None, None, f"bad {key}", node.start_mark)
        return {key: value}

    return construct


for _tag, _key in _TAGS.items():
    CfnLoader.add_constructor(_tag, _constructor(_key))


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain dicts and lists (intrinsics in their long form): a copy of its
    own for each caller, parsed again only when the file changes."""
    stat = path.stat()
    return copy.deepcopy(_parsed(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # the cache key: a changed file is parsed again
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return document


class Unresolvable(LookupError):
    """A value needs something the local stack does not have (a resource it did not create,
    a parameter without default or override, an intrinsic the resolver does not know)."""


def walk_refs(value: Any) -> Iterator[str]:
    """Every logical id (or parameter name) that `value` refers to: Ref, GetAtt, Sub variables."""
    if isinstance(value, list):
        for item in value:
            yield from walk_refs(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg
                return
            if key == "Fn::GetAtt":
                name = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                yield str(name)
                return
            if key == "Fn::Sub":
                text, local = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                for var in _SUB_VAR.findall(str(text)):
                    if var not in local:
                        yield var.split(".", 1)[0]
                yield from walk_refs(local)
                return
        for item in value.values():
            yield from walk_refs(item)


_SUB_VAR = re.compile(r"\$\{(?!!)([^}]+)\}")


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and created resources."""

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def for_template(  # noqa: PLR0913 - keyword-only: CloudFormation's pseudo parameters
        cls,
        template: Mapping[str, Any],
        *,
        overrides: Mapping[str, str] | None = None,
        region: str,
        account_id: str,
        stack_name: str,
        stack_id: str | None = None,
    ) -> Resolver:
        declared: Mapping[str, Any] = template.get("Parameters") or {}
        unknown = set(overrides or {}) - set(declared)
        if unknown:
            raise ValueError(f"parameter overrides for undeclared parameters: {sorted(unknown)}")
        values = {
            name: str(spec["Default"])
            for name, spec in declared.items()
            if isinstance(spec, dict) and "Default" in spec
        }
        values.update({k: str(v) for k, v in (overrides or {}).items()})
        pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": stack_id
            or f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": "",
        }
        return cls(template=template, parameters=values, pseudo=pseudo)

    def rule_failures(self) -> list[str]:
        """AssertDescription of every template Rules assertion these parameters break (what
        CloudFormation refuses before creating anything)."""
        failures: list[str] = []
        for name, rule in (self.template.get("Rules") or {}).items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions") or []:
                if not self.resolve(assertion["Assert"]):
                    failures.append(f"{name}: {assertion.get('AssertDescription', 'assertion')}")
        return failures

    # -- bookkeeping of created resources -----------------------------------------------
    def created(self, logical_id: str, ref: Any, attributes: Mapping[str, Any]) -> None:
        self.refs[logical_id] = ref
        for name, value in attributes.items():
            self.attributes[(logical_id, name)] = value

    # -- conditions ---------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions: Mapping[str, Any] = self.template.get("Conditions") or {}
            if name not in conditions:
                raise Unresolvable(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def is_enabled(self, logical_id: str) -> bool:
        """False when the resource has a Condition that is false for these parameters."""
        resource = self.template["Resources"][logical_id]
        cond = resource.get("Condition")
        return True if cond is None else self.condition(str(cond))

    # -- values -------------------------------------------------------------------------
    def parameter_type(self, name: str) -> str:
        spec = (self.template.get("Parameters") or {}).get(name) or {}
        return str(spec.get("Type", "String"))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.refs:
            return self.refs[name]
        if name in (self.template.get("Parameters") or {}):
            if name not in self.parameters:
                raise Unresolvable(f"parameter {name} has no default and no override")
            value = self.parameters[name]
            kind = self.parameter_type(name)
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                # As CloudFormation: each member space-trimmed, and "" is [""] (not []).
                return [item.strip() for item in value.split(",")]
            return value
        raise Unresolvable(f"Ref {name}: not a parameter nor a resource created locally")

    def get_att(self, name: str, attribute: str) -> Any:
        try:
            return self.attributes[(name, attribute)]
        except KeyError:
            raise Unresolvable(f"GetAtt {name}.{attribute}: not available locally") from None

    def sub(self, text: str, local: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            var = match.group(1)
            if var in local:
                return str(self.resolve(local[var]))
            if "." in var and var not in self.pseudo:
                name, attribute = var.split(".", 1)
                return str(self.get_att(name, attribute))
            return str(self.ref(var))

        replaced = _SUB_VAR.sub(replace, text)
        return replaced.replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic evaluated; AWS::NoValue entries are dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise Unresolvable(f"{key} is not supported by the local resolver")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}


_NO_VALUE = object()


def _ref(r: Resolver, arg: Any) -> Any:
    return _NO_VALUE if arg == NO_VALUE else r.ref(str(arg))


def _get_att(r: Resolver, arg: Any) -> Any:
    name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
    return r.get_att(str(name), str(r.resolve(attribute)))


def _sub(r: Resolver, arg: Any) -> str:
    if isinstance(arg, list):
        return r.sub(str(arg[0]), arg[1] if len(arg) > 1 else {})
    return r.sub(str(arg), {})


def _if(r: Resolver, arg: Any) -> Any:
    name, when_true, when_false = arg
    return r.resolve(when_true if r.condition(str(name)) else when_false)


def _equals(r: Resolver, arg: Any) -> bool:
    left, right = (r.resolve(item) for item in arg)
    return str(left) == str(right)


def _join(r: Resolver, arg: Any) -> str:
    delimiter, items = arg
    return str(delimiter).join(str(item) for item in r.resolve(items))


def _select(r: Resolver, arg: Any) -> Any:
    index, items = arg
    return r.resolve(items)[int(r.resolve(index))]


def _split(r: Resolver, arg: Any) -> list[str]:
    delimiter, text = arg
    return str(r.resolve(text)).split(str(delimiter))


def _find_in_map(r: Resolver, arg: Any) -> Any:
    name, top, second = (r.resolve(item) for item in arg)
    try:
        return r.resolve((r.template.get("Mappings") or {})[name][top][second])
    except KeyError:
        raise Unresolvable(f"FindInMap {name}/{top}/{second}") from None


def _get_azs(r: Resolver, arg: Any) -> list[str]:
    region = str(r.resolve(arg)) or r.pseudo["AWS::Region"]
    return [f"{region}{zone}" for zone in "abc"]


def _cidr(r: Resolver, arg: Any) -> list[str]:
    block, count, cidr_bits = (r.resolve(item) for item in arg)
    network = ipaddress.ip_network(str(block))
    prefix = network.max_prefixlen - int(cidr_bits)
    subnets = network.subnets(new_prefix=prefix)
    return [str(next(subnets)) for _ in range(int(count))]


def _contains(r: Resolver, arg: Any) -> bool:
    items, value = (r.resolve(item) for item in arg)
    return str(value) in [str(item) for item in items]


_INTRINSICS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": lambda r, arg: not r.resolve(arg[0]),
    "Fn::And": lambda r, arg: all(r.resolve(item) for item in arg),
    "Fn::Or": lambda r, arg: any(r.resolve(item) for item in arg),
    "Condition": lambda r, arg: r.condition(str(arg)),
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::FindInMap": _find_in_map,
    "Fn::GetAZs": _get_azs,
    "Fn::Cidr": _cidr,
    "Fn::Contains": _contains,
}


# ------------------------------------------------------------ the template, resolved ----


@dataclass(frozen=True)
class ResourceRef:
    """A resource's Ref (attribute None) or GetAtt, left symbolic: nothing is created."""

    logical_id: str
    attribute: str | None = None

    def __str__(self) -> str:
        name = self.logical_id if self.attribute is None else f"{self.logical_id}.{self.attribute}"
        return "${" + name + "}"


class SymbolicResolver(Resolver):
    """Resolves as CloudFormation would for given parameters, without creating anything: a
    resource's Ref or GetAtt becomes a ResourceRef (rendered "${Id}" inside Fn::Sub), and
    Fn::Transform (AWS::Include) is left as written."""

    def ref(self, name: str) -> Any:
        if name not in self.pseudo and name in self.template["Resources"]:
            return ResourceRef(name)
        return super().ref(name)

    def get_att(self, name: str, attribute: str) -> Any:
        if name in self.template["Resources"]:
            return ResourceRef(name, attribute)
        return super().get_att(name, attribute)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and "Fn::Transform" in value:
            return value
        return super().resolve(value)


@dataclass(frozen=True)
class ResolvedStack:
    """template.yaml as CloudFormation would see it for one set of parameters: the resources
    whose Condition holds, each with Properties (and Metadata) resolved and DependsOn a list."""

    resources: Mapping[str, Mapping[str, Any]]
    conditions: Mapping[str, bool]
    parameters: Mapping[str, str]
    rule_failures: tuple[str, ...]


def resolve_template(  # noqa: PLR0913 - keyword-only: CloudFormation's pseudo parameters
    template: Mapping[str, Any],
    *,
    overrides: Mapping[str, str] | None = None,
    region: str,
    account_id: str,
    stack_name: str,
    stack_id: str,
) -> ResolvedStack:
    """Evaluate Conditions, Fn::If, AWS::NoValue, pseudo parameters and the other intrinsics."""
    resolver = SymbolicResolver.for_template(
        template,
        overrides=overrides,
        region=region,
        account_id=account_id,
        stack_name=stack_name,
        stack_id=stack_id,
    )
    resources: dict[str, Mapping[str, Any]] = {}
    for logical_id, resource in template["Resources"].items():
        if not resolver.is_enabled(logical_id):
            continue
        depends = resource.get("DependsOn") or []
        resolved = {key: value for key, value in resource.items() if key not in _RESOLVED_KEYS}
        resolved["DependsOn"] = [depends] if isinstance(depends, str) else list(depends)
        resolved["Properties"] = resolver.resolve(resource.get("Properties") or {})
        resolved["Metadata"] = resolver.resolve(resource.get("Metadata") or {})
        resources[logical_id] = resolved
    conditions = {name: resolver.condition(name) for name in template.get("Conditions") or {}}
    return ResolvedStack(
        resources=resources,
        conditions=conditions,
        parameters=dict(resolver.parameters),
        rule_failures=tuple(resolver.rule_failures()),
    )


_RESOLVED_KEYS = frozenset({"DependsOn", "Properties", "Metadata"})
