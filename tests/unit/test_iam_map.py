"""The IAM map: every AWS call the code makes is granted to the role that makes it, and nothing
more is granted without a written reason.

How the map is built (docs/security.md has the resulting table):

1. Calls. Each component's Python sources are parsed (never imported). From the entry module
   (the handler named by the template, `adapters_service` for the worker) the reachable code
   is found by rapid type analysis: a method counts only when its name is called from reached
   code AND its class is constructed in reached code. Every call `x.<op>(...)` whose name is a
   boto3 operation of a service the code builds clients for is an AWS call; botocore's own
   service models turn `<op>` into the IAM action (`put_item` -> `dynamodb:PutItem`), with
   the few exceptions in ACTION_EXCEPTIONS (`head_object` is authorized as `s3:GetObject`).
2. Resources. A class talks to what it was constructed with: the `settings.<field>` arguments
   at its construction sites (a class built without any inherits the resource of the class that
   builds it). nfse_core/config.py names each field's environment variable, and the template
   sets that variable to a `!Ref`/`!GetAtt` of the resource (or a parameter, for the
   certificate secrets' prefix). Some calls imply others (IMPLIED: the Data API reads the DB
   secret as the caller), and every call on a KMS-encrypted resource needs the key
   (kms:Decrypt; writes also kms:GenerateDataKey) - SAM policy templates never grant it.
3. Grants. SAM policy templates are resolved with SAM_POLICY_TEMPLATES (the actions of
   nfse_local.iam's table of SAM's policy_templates.json); inline statements are read as written.
4. Rules. Nothing missing. Every inline action is used by the code, and every SAM policy
   template grants at least one used action, unless the statement's Sid has a reason in the
   owning resource's `Metadata.IamReasons`. An Allow on `Resource: "*"` or of `Action: "*"` /
   `"<service>:*"` needs the same kind of reason. Managed policies need a reason in
   MANAGED_POLICY_REASONS.

The last tests run the checker on a small synthetic template and source tree, to show that a
boto3 call added without its permission (or a wildcard without a reason) fails.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import aws_lambda_powertools.utilities.idempotency.persistence.dynamodb as powertools_dynamodb
import botocore.session
import pytest
from botocore import xform_name

from nfse_local.cfn import load_template, walk_refs
from nfse_local.iam import SAM_POLICY_ACTIONS as SAM_POLICY_TEMPLATES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
PACKAGES = ("nfse_core", "functions", "adapters_service")
CONFIG_PATH = ROOT / "nfse_core" / "config.py"

# Third-party classes that make AWS calls with a client we hand them. Their AWS calls all count
# once the class is constructed by reached code (we do not follow their internals).
EXTERNAL_ADAPTERS = (Path(powertools_dynamodb.__file__),)

# Operations whose answer for a missing key depends on s3:ListBucket (see needs_of_calls).
EXISTENCE_CHECKS = frozenset({"head_object"})

# Operation -> IAM action where the two differ (otherwise "<signing name>:<OperationName>").
ACTION_EXCEPTIONS = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
}

# Managed policies SAM attaches (or the template names), and why each is acceptable.
MANAGED_POLICY_REASONS = {
    "AWSLambdaBasicExecutionRole": "SAM adds it to every function: CreateLogStream/PutLogEvents.",
    "AWSXrayWriteOnlyAccess": "Tracing: Active; X-Ray segment APIs have no resource-level ARNs.",
    "AWSLambdaVPCAccessExecutionRole": "VpcConfig: ENI management has no resource-level ARNs.",
    "AmazonECSTaskExecutionRolePolicy": "ECS execution role: pull the image, write task logs.",
    "AmazonAPIGatewayPushToCloudWatchLogs": "API Gateway account role for stage logging.",
}

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
# Method names builtin containers and strings also have (`answer.get(...)`): such a call counts
# only when its receiver's type is known (an annotated parameter or attribute, or a variable
# assigned a constructor call), so `dict.get` does not make every `get` method reachable.
AMBIGUOUS = frozenset(
    name
    for kind in (dict, list, set, frozenset, tuple, str, bytes)
    for name in dir(kind)
    if not name.startswith("_")
)


# ------------------------------------------------------------------------ sources ----


@dataclass
class Func:
    module: str
    qualname: str
    cls: str | None
    bare_calls: set[str] = field(default_factory=set)
    attr_calls: set[str] = field(default_factory=set)
    class_attr_calls: set[tuple[str, str]] = field(default_factory=set)
    typed_calls: set[tuple[str, str]] = field(default_factory=set)  # (receiver type, method)
    # (callee name, settings fields among its arguments)
    calls_with_fields: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    aws_calls: list[tuple[str, int]] = field(default_factory=list)
    returns: str | None = None  # the class named by the return annotation

    @property
    def where(self) -> str:
        return f"{self.module}:{self.qualname}"


@dataclass
class Klass:
    name: str
    module: str
    bases: list[str]
    methods: dict[str, Func]
    external: bool = False


@dataclass
class Module:
    name: str
    imports: set[str]
    functions: dict[str, Func]
    classes: dict[str, Klass]
    toplevel: Func


@dataclass
class SourceIndex:
    modules: dict[str, Module]
    boto_ops: Mapping[str, tuple[str, ...]]  # snake op -> IAM service prefixes that have it
    operations: Mapping[tuple[str, str], str]  # (prefix, snake op) -> IAM action

    def classes(self, name: str) -> list[Klass]:
        return [k for m in self.modules.values() for k in m.classes.values() if k.name == name]


def _call_name(call: ast.Call) -> tuple[str | None, str | None, str | None]:
    """(bare name, attribute name, receiver name) of a call."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id, None, None
    if isinstance(func, ast.Attribute):
        receiver = func.value.id if isinstance(func.value, ast.Name) else None
        return None, func.attr, receiver
    return None, None, None


def _type_name(annotation: ast.expr | None) -> str | None:
    """`Documents`, `store.Documents`, `"Documents"`, `Documents | None` -> "Documents"."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _type_name(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.Name):
        return annotation.id
    if isinstance(annotation, ast.Attribute):
        return annotation.attr
    if isinstance(annotation, ast.BinOp):
        return _type_name(annotation.left) or _type_name(annotation.right)
    if isinstance(annotation, ast.Subscript):
        return _type_name(annotation.slice)
    return None


def _local_types(node: ast.AST) -> dict[str, str]:
    """Variable -> class name: annotated parameters and `x = SomeClass(...)` assignments."""
    types: dict[str, str] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg) and (name := _type_name(sub.annotation)):
            types[sub.arg] = name
        elif isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call):
            bare, attr, _ = _call_name(sub.value)
            callee = bare or attr
            for target in sub.targets:
                if isinstance(target, ast.Name) and callee and callee[:1].isupper():
                    types[target.id] = callee
    return types


def _attribute_types(cls: ast.ClassDef) -> dict[str, str]:
    """self.<attr> -> class name: annotated class fields, `self.x = param` / `= Class(...)`."""
    types: dict[str, str] = {}
    for item in cls.body:
        if (
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and (name := _type_name(item.annotation))
        ):
            types[item.target.id] = name
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        local = _local_types(method)
        for sub in ast.walk(method):
            if not isinstance(sub, ast.Assign):
                continue
            for target in sub.targets:
                if not (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    continue
                if isinstance(sub.value, ast.Name) and sub.value.id in local:
                    types[target.attr] = local[sub.value.id]
                elif isinstance(sub.value, ast.Call):
                    bare, attr, _ = _call_name(sub.value)
                    if (callee := bare or attr) and callee[:1].isupper():
                        types[target.attr] = callee
    return types


def _receiver_type(
    receiver: ast.expr, local: Mapping[str, str], attrs: Mapping[str, str]
) -> str | None:
    if isinstance(receiver, ast.Name):
        return local.get(receiver.id)
    if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name):
        return f"{receiver.func.id}()"  # resolved later by the function's return annotation
    if (
        isinstance(receiver, ast.Attribute)
        and isinstance(receiver.value, ast.Name)
        and receiver.value.id == "self"
    ):
        return attrs.get(receiver.attr)
    return None


def _scan(
    node: ast.AST,
    func: Func,
    settings_fields: frozenset[str],
    boto_ops: Mapping[str, Any],
    attrs: Mapping[str, str] | None = None,
) -> None:
    local = _local_types(node)
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        bare, attr, receiver = _call_name(sub)
        if bare is not None:
            func.bare_calls.add(bare)
        if attr is not None and isinstance(sub.func, ast.Attribute):
            if attr in AMBIGUOUS:
                typed = _receiver_type(sub.func.value, local, attrs or {})
                if typed is not None:
                    func.typed_calls.add((typed, attr))
            else:
                func.attr_calls.add(attr)
            if receiver is not None:
                func.class_attr_calls.add((receiver, attr))
            if attr in boto_ops:
                func.aws_calls.append((attr, sub.lineno))
        callee = bare or attr
        if callee is not None:
            args = [*sub.args, *(k.value for k in sub.keywords)]
            fields = frozenset(
                a.attr
                for arg in args
                for a in ast.walk(arg)
                if isinstance(a, ast.Attribute) and a.attr in settings_fields
            )
            func.calls_with_fields.append((callee, fields))
    # Bound methods handed over as callbacks (`pool.submit(self._handle, ...)`) are called too.
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == "self"
            and isinstance(sub.ctx, ast.Load)
            and sub.attr not in AMBIGUOUS
        ):
            func.attr_calls.add(sub.attr)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parse_module(
    name: str,
    path: Path,
    settings_fields: frozenset[str],
    boto_ops: Mapping[str, Any],
    *,
    external: bool = False,
) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports: set[str] = set()
    functions: dict[str, Func] = {}
    classes: dict[str, Klass] = {}
    toplevel = Func(name, "<module>", None)
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
            imports.update(f"{node.module}.{alias.name}" for alias in node.names)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = Func(name, node.name, None, returns=_type_name(node.returns))
            _scan(node, func, settings_fields, boto_ops)
            functions[node.name] = func
        elif isinstance(node, ast.ClassDef):
            methods: dict[str, Func] = {}
            attrs = _attribute_types(node)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    func = Func(name, f"{node.name}.{item.name}", node.name)
                    _scan(item, func, settings_fields, boto_ops, attrs)
                    methods[item.name] = func
            bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
            classes[node.name] = Klass(node.name, name, bases, methods, external)
        else:
            _scan(node, toplevel, settings_fields, boto_ops)
    return Module(name, imports, functions, classes, toplevel)


def client_services(paths: Iterable[Path]) -> set[str]:
    """Services the code builds boto3 clients for: `client("sqs")`, `_client("s3")`..."""
    services: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                _, attr, _ = _call_name(node)
                bare, _, _ = _call_name(node)
                name = attr or bare
                if (
                    name in {"client", "_client"}
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    services.add(node.args[0].value)
    return services


def boto_operations(
    services: Iterable[str],
) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], str]]:
    session = botocore.session.get_session()
    by_op: dict[str, list[str]] = {}
    actions: dict[tuple[str, str], str] = {}
    for service in sorted(services):
        model = session.get_service_model(service)
        prefix = model.signing_name
        for operation in model.operation_names:
            snake = xform_name(operation)
            by_op.setdefault(snake, []).append(prefix)
            actions[(prefix, snake)] = ACTION_EXCEPTIONS.get(
                (prefix, operation), f"{prefix}:{operation}"
            )
    return {k: tuple(v) for k, v in by_op.items()}, actions


def settings_aliases(config_path: Path) -> dict[str, str]:
    """settings field -> environment variable, from the Field(alias=...) of config.py."""
    aliases: dict[str, str] = {}
    for node in ast.walk(ast.parse(config_path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.value, ast.Call)
        ):
            for keyword in node.value.keywords:
                if keyword.arg == "alias" and isinstance(keyword.value, ast.Constant):
                    aliases[node.target.id] = str(keyword.value.value)
    return aliases


def build_index(
    root: Path,
    packages: Iterable[str],
    aliases: Mapping[str, str],
    external: Iterable[Path] = (),
    services: Iterable[str] | None = None,
) -> SourceIndex:
    paths = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))]
    used = set(services) if services is not None else client_services(paths)
    boto_ops, operations = boto_operations(used)
    fields = frozenset(aliases)
    modules = {
        _module_name(p, root): _parse_module(_module_name(p, root), p, fields, boto_ops)
        for p in paths
    }
    for path in external:
        name = f"external.{path.stem}"
        modules[name] = _parse_module(name, path, fields, boto_ops, external=True)
    return SourceIndex(modules, boto_ops, operations)


# --------------------------------------------------------------------- reachability ----


@dataclass(frozen=True)
class AwsCall:
    op: str
    where: str
    line: int
    cls: str | None


@dataclass
class Reach:
    functions: dict[str, Func]
    live: set[str]
    # class -> construction sites: (settings fields, the class whose method builds it)
    constructions: dict[str, list[tuple[frozenset[str], str | None]]]

    def calls(self) -> list[AwsCall]:
        return [
            AwsCall(op, f.where, line, f.cls)
            for f in self.functions.values()
            for op, line in f.aws_calls
        ]


def import_closure(index: SourceIndex, entries: Iterable[str]) -> set[str]:
    todo = list(entries)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in index.modules:
            continue
        seen.add(name)
        todo.extend(index.modules[name].imports)
    return seen | {n for n, m in index.modules.items() if n.startswith("external.")}


def _lookup(index: SourceIndex, modules: set[str], cls: str, method: str) -> Iterator[Func]:
    """`method` on class `cls` or, failing that, on its bases (by name)."""
    for klass in index.classes(cls):
        if klass.module not in modules:
            continue
        if method in klass.methods:
            yield klass.methods[method]
        else:
            for base in klass.bases:
                yield from _lookup(index, modules, base, method)


def _ancestry(index: SourceIndex, cls: str, seen: frozenset[str] = frozenset()) -> set[str]:
    names = {cls}
    for klass in index.classes(cls):
        for base in klass.bases:
            if base not in seen:
                names |= _ancestry(index, base, seen | {cls})
    return names


def reach(index: SourceIndex, entries: list[str]) -> Reach:
    modules = import_closure(index, entries)
    mods = [index.modules[m] for m in sorted(modules)]
    classes = {k.name: k for m in mods for k in m.classes.values()}
    functions = {name: f for m in mods for name, f in m.functions.items()}
    reached: dict[str, Func] = {m.toplevel.where: m.toplevel for m in mods}
    for entry in entries:
        reached.update({f.where: f for f in index.modules[entry].functions.values()})
    live: set[str] = set()
    changed = True
    while changed:
        changed = False
        for func in list(reached.values()):
            targets: list[Func] = []
            for name in func.bare_calls:
                if name in functions:
                    targets.append(functions[name])
                if name in classes and name not in live:
                    live.add(name)
                    changed = True
            if "cls" in func.bare_calls and func.cls and func.cls not in live:
                live.add(func.cls)
                changed = True
            for receiver, attr in func.class_attr_calls:
                if receiver in classes:
                    targets.extend(_lookup(index, modules, receiver, attr))
            for name in func.attr_calls:
                if name in functions:
                    targets.append(functions[name])
                for cls in live:
                    targets.extend(_lookup(index, modules, cls, name))
            for receiver_type, name in func.typed_calls:
                typed = receiver_type
                if typed.endswith("()"):
                    typed = (functions.get(typed[:-2]) or func).returns or ""
                # A Protocol stands for every live class; a class for itself and its subclasses.
                protocol = any(
                    "Protocol" in k.bases and name in k.methods for k in index.classes(typed)
                )
                for cls in live:
                    if protocol or typed in _ancestry(index, cls):
                        targets.extend(_lookup(index, modules, cls, name))
            for cls in live:
                # Constructed objects are initialized, and callable ones are there to be called.
                for special in ("__init__", "__post_init__", "__call__"):
                    targets.extend(_lookup(index, modules, cls, special))
                if classes[cls].external:
                    targets.extend(classes[cls].methods.values())
            for target in targets:
                if target.where not in reached:
                    reached[target.where] = target
                    changed = True
    constructions: dict[str, list[tuple[frozenset[str], str | None]]] = {}
    for func in reached.values():
        for callee, fields in func.calls_with_fields:
            if callee in classes:
                constructions.setdefault(callee, []).append((fields, func.cls))
            elif callee == "cls" and func.cls:
                constructions.setdefault(func.cls, []).append((fields, func.cls))
    return Reach(reached, live, constructions)


def bound_fields(found: Reach, cls: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The settings fields a class was constructed with (inherited from its builder if none)."""
    fields: set[str] = set()
    for site_fields, owner in found.constructions.get(cls, []):
        if site_fields:
            fields |= site_fields
        elif owner and owner != cls and owner not in seen:
            fields |= bound_fields(found, owner, seen | {cls})
    return fields


# ------------------------------------------------------------------------ template ----


@dataclass(frozen=True, order=True)
class Need:
    component: str
    action: str
    resource: str
    why: str = field(compare=False)


@dataclass(frozen=True)
class Grant:
    component: str
    owner: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str | None
    origin: str  # "inline", or the SAM policy template's name


@dataclass(frozen=True)
class Component:
    name: str
    kind: str  # "function", "role" or "state-machine"
    logical_id: str
    entries: tuple[str, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)


def resource_key(template: Mapping[str, Any], value: Any) -> str | None:
    """What a policy Resource / env value / template parameter refers to, as a map key."""
    resources = template.get("Resources", {})
    parameters = template.get("Parameters", {})
    if value == "*":
        return "*"
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            if arg in resources:
                return str(arg)
            return f"param:{arg}" if arg in parameters else None
        if fn == "Fn::GetAtt":
            name, attr = (arg if isinstance(arg, list) else str(arg).split(".", 1))[:2]
            if str(attr).endswith(".SecretArn"):
                return f"{name}.{str(attr).rsplit('.', 1)[0]}"
            return str(name)
        if fn == "Fn::Sub":
            text = arg[0] if isinstance(arg, list) else arg
            inner = arg[1] if isinstance(arg, list) and len(arg) > 1 else {}
            for var in _SUB_VAR.findall(str(text)):
                if var in inner:
                    found: str | None = resource_key(template, inner[var])
                    return found
                name = str(var).split(".", 1)[0]
                if name in resources:
                    return name
                if name in parameters:
                    return f"param:{name}"
    return None


def resource_kind(template: Mapping[str, Any], key: str) -> str | None:
    if key.startswith("param:"):
        # Convention: a parameter named *SecretPrefix / *SecretName / *SecretArn names secrets.
        return "secretsmanager" if re.search(r"Secret(Prefix|Name|Arn)$", key) else None
    if key.endswith(".MasterUserSecret"):
        return "secretsmanager"
    resource = template.get("Resources", {}).get(key)
    return RESOURCE_KINDS.get(resource["Type"]) if resource else None


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for fn, arg in value.items():
            if fn == "Ref" and isinstance(arg, str):
                yield arg
            elif fn == "Fn::GetAtt":
                yield (arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
            else:
                yield from _refs(arg)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


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
    return next((ref for ref in _refs(setting) if ref in keys), None)


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
        match = re.fullmatch(
            r"arn:aws:states:::([a-z0-9-]+):(\w+)(\..+)?", state.get("Resource", "")
        )
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


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_of(
    template: Mapping[str, Any], component: Component
) -> tuple[list[Grant], list[str]]:
    """(grants, managed policy names) of a component's role."""
    resources = template["Resources"]
    resource = resources[component.logical_id]
    props = resource.get("Properties", {})
    grants: list[Grant] = []
    managed: list[str] = []

    def inline(statements: Any, owner: str) -> None:
        for st in _as_list(statements):
            if st.get("Effect") != "Allow":
                continue
            keys = tuple(
                resource_key(template, r) or json.dumps(r) for r in _as_list(st["Resource"])
            )
            grants.append(
                Grant(
                    component.name,
                    owner,
                    tuple(_as_list(st["Action"])),
                    keys,
                    st.get("Sid"),
                    "inline",
                )
            )

    if component.kind in {"function", "state-machine"}:
        for policy in _as_list(props.get("Policies", [])):
            if isinstance(policy, str):
                managed.append(policy.rsplit("/", 1)[-1])
            elif "Statement" in policy:
                inline(policy["Statement"], component.logical_id)
            else:
                ((name, params),) = policy.items()
                if name not in SAM_POLICY_TEMPLATES:
                    raise AssertionError(f"{component.name}: add {name} to SAM_POLICY_TEMPLATES")
                target = resource_key(template, next(iter(params.values()))) or "?"
                grants.append(
                    Grant(
                        component.name,
                        component.logical_id,
                        SAM_POLICY_TEMPLATES[name],
                        (target,),
                        None,
                        name,
                    )
                )
        if component.kind == "function":
            globals_fn = template.get("Globals", {}).get("Function", {})
            managed.append("AWSLambdaBasicExecutionRole")
            if props.get("Tracing", globals_fn.get("Tracing")) == "Active":
                managed.append("AWSXrayWriteOnlyAccess")
            if props.get("VpcConfig"):
                managed.append("AWSLambdaVPCAccessExecutionRole")
        elif props.get("Tracing", {}).get("Enabled"):
            managed.append("AWSXrayWriteOnlyAccess")
    else:
        role = resources[component.logical_id]["Properties"]
        for policy in role.get("Policies", []):
            inline(policy["PolicyDocument"]["Statement"], component.logical_id)
        managed.extend(str(_arn_tail(a)) for a in role.get("ManagedPolicyArns", []))
        for lid, res in resources.items():
            if res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"} and any(
                component.logical_id in _refs(r) for r in res["Properties"].get("Roles", [])
            ):
                inline(res["Properties"]["PolicyDocument"]["Statement"], lid)
    return grants, managed


def _arn_tail(arn: Any) -> str:
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
            docs += [p for p in _as_list(props.get("Policies", [])) if isinstance(p, dict)]
        elif res["Type"] == "AWS::IAM::Role":
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            docs.append(props["PolicyDocument"])
        elif res["Type"] == "AWS::KMS::Key":
            docs.append(props["KeyPolicy"])
        for doc in docs:
            for st in _as_list(doc.get("Statement", [])):
                if st.get("Effect") == "Allow":
                    yield lid, st


def unexplained_wildcards(template: Mapping[str, Any]) -> list[str]:
    problems = []
    for owner, st in all_allow_statements(template):
        actions = [str(a) for a in _as_list(st.get("Action", []))]
        wild_action = [a for a in actions if a == "*" or a.endswith(":*")]
        wild_resource = "*" in _as_list(st.get("Resource", []))
        if (wild_action or wild_resource) and st.get("Sid") not in iam_reasons(template, owner):
            problems.append(
                f"{owner}: statement {st.get('Sid')!r} allows {actions} on "
                f"{st.get('Resource')!r}: give it a Sid and a reason in Metadata.IamReasons"
            )
    return problems


# ---------------------------------------------------------------------- components ----


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@cache
def aliases() -> dict[str, str]:
    return settings_aliases(CONFIG_PATH)


@cache
def index() -> SourceIndex:
    return build_index(ROOT, PACKAGES, aliases(), EXTERNAL_ADAPTERS)


def _function_env(tpl: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    globals_env = tpl.get("Globals", {}).get("Function", {}).get("Environment", {})
    own = tpl["Resources"][logical_id]["Properties"].get("Environment", {})
    return {**globals_env.get("Variables", {}), **own.get("Variables", {})}


def components(tpl: Mapping[str, Any]) -> dict[str, Component]:
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
            (role,) = set(_refs(props["TaskRoleArn"]))
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
    needs, problems = _needs_of_real(name)
    return set(needs), list(problems)


COMPONENT_NAMES = sorted(components(template()))


@cache
def the_map() -> dict[str, set[Need]]:
    out: dict[str, set[Need]] = {}
    for name in components(template()):
        needs, problems = needs_of(name)
        assert not problems, problems
        out[name] = needs
    return out


def render_map() -> str:
    """The Markdown table of docs/security.md."""
    lines = ["| component | action | resource |", "|---|---|---|"]
    for name in sorted(the_map()):
        for need in sorted(the_map()[name]):
            lines.append(f"| {name} | `{need.action}` | {need.resource} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tests ----


def test_components_are_the_functions_the_state_machine_and_the_worker() -> None:
    assert COMPONENT_NAMES == [
        "EmissionStateMachine",
        "EmitFn",
        "GetFn",
        "MigrateFn",
        "ProcessorFn",
        "SweeperFn",
        "WorkerTaskRole",
    ]


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_aws_call_is_placed_on_a_resource(name: str) -> None:
    _, problems = needs_of(name)
    assert problems == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_aws_call_is_granted(name: str) -> None:
    component = components(template())[name]
    grants, _ = statements_of(template(), component)
    missing = [f"{n.action} on {n.resource} ({n.why})" for n in sorted(the_map()[name])]
    missing = [
        text
        for text, need in zip(missing, sorted(the_map()[name]), strict=True)
        if not is_granted(need, grants)
    ]
    assert missing == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_nothing_is_granted_that_the_code_does_not_use(name: str) -> None:
    grants, _ = statements_of(template(), components(template())[name])
    assert unused_grants(template(), the_map()[name], grants) == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_managed_policies_have_reasons(name: str) -> None:
    _, managed = statements_of(template(), components(template())[name])
    assert [m for m in managed if m not in MANAGED_POLICY_REASONS] == []


def test_no_wildcard_without_a_reason() -> None:
    assert unexplained_wildcards(template()) == []


# Roles an AWS service assumes to deliver logs (no code of ours runs with them): the service,
# and the one log group their inline policy may name.
DELIVERY_ROLES = {"VpcFlowLogRole": ("vpc-flow-logs.amazonaws.com", "VpcFlowLogGroup")}


def test_every_role_in_the_template_is_a_mapped_component_or_explained() -> None:
    roles = {lid for lid, r in template()["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    # The execution role only pulls the image and writes logs (ECS agent, not our code); the
    # API Gateway role is the account-level logging role. Both carry managed policies only.
    for lid in roles - set(COMPONENT_NAMES):
        props = template()["Resources"][lid]["Properties"]
        if lid in DELIVERY_ROLES:
            service, log_group = DELIVERY_ROLES[lid]
            principals = [s["Principal"] for s in props["AssumeRolePolicyDocument"]["Statement"]]
            assert principals == [{"Service": service}], (lid, principals)
            statements = [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]
            for statement in statements:
                assert all(set(walk_refs(r)) == {log_group} for r in statement["Resource"]), (
                    lid,
                    statement,
                )
            continue
        assert not props.get("Policies"), f"{lid}: inline policies of a role no test maps"
        tails = [_arn_tail(a) for a in props.get("ManagedPolicyArns", [])]
        assert all(t in MANAGED_POLICY_REASONS for t in tails), (lid, tails)


def test_the_map_finds_the_known_calls() -> None:
    """A guard on the checker itself: it must see these, or it sees nothing."""
    expected = {
        ("EmitFn", "dynamodb:PutItem", "InvoicesTable"),
        ("EmitFn", "dynamodb:UpdateItem", "RpsCountersTable"),
        ("EmitFn", "dynamodb:GetItem", "TenantsTable"),
        ("EmitFn", "dynamodb:DeleteItem", "IdempotencyTable"),
        ("EmitFn", "s3:PutObject", "DocsBucket"),
        ("EmitFn", "states:StartExecution", "EmissionStateMachine"),
        ("EmitFn", "kms:GenerateDataKey", "KmsKey"),
        ("GetFn", "dynamodb:GetItem", "InvoicesTable"),
        ("GetFn", "kms:Decrypt", "KmsKey"),
        ("ProcessorFn", "sqs:ReceiveMessage", "RequestsDLQ"),
        ("ProcessorFn", "sqs:DeleteMessage", "RequestsDLQ"),
        ("ProcessorFn", "secretsmanager:GetSecretValue", "param:CertSecretPrefix"),
        ("ProcessorFn", "secretsmanager:GetSecretValue", "LedgerAppSecret"),
        ("ProcessorFn", "rds-data:ExecuteStatement", "DbCluster"),
        ("WorkerTaskRole", "sqs:ReceiveMessage", "RequestsQueue"),
        ("WorkerTaskRole", "sqs:ChangeMessageVisibility", "RequestsQueue"),
        ("WorkerTaskRole", "s3:GetObject", "DocsBucket"),
        ("WorkerTaskRole", "dynamodb:UpdateItem", "InvoicesTable"),
        ("WorkerTaskRole", "rds-data:ExecuteStatement", "DbCluster"),
        ("EmissionStateMachine", "sqs:SendMessage", "RequestsQueue"),
        ("EmissionStateMachine", "dynamodb:UpdateItem", "InvoicesTable"),
        ("EmissionStateMachine", "kms:GenerateDataKey", "KmsKey"),
    }
    found = {(n.component, n.action, n.resource) for needs in the_map().values() for n in needs}
    assert expected - found == set()
    # GetFn reads; it must not be thought to write, nor to touch other tables.
    assert {(n.action, n.resource) for n in the_map()["GetFn"]} == {
        ("dynamodb:GetItem", "InvoicesTable"),
        ("kms:Decrypt", "KmsKey"),
    }


def test_docs_security_lists_the_current_map() -> None:
    docs = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert render_map() in docs, "regenerate the table: python -m tests.unit.test_iam_map"


# ------------------------------------------------------- the checker on a synthetic case ----

SYNTHETIC_TEMPLATE = """
Parameters:
  Stage: {Type: String}
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:
      KeyPolicy: {Statement: []}
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      SSESpecification: {SSEEnabled: true, SSEType: KMS, KMSMasterKeyId: !Ref Key}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      CodeUri: fn/
      Environment:
        Variables:
          THINGS_TABLE: !Ref Things
      Policies:
        - DynamoDBReadPolicy:
            TableName: !Ref Things
        - Statement:
            - Sid: Kms
              Effect: Allow
              Action: kms:Decrypt
              Resource: !GetAtt Key.Arn
"""

SYNTHETIC_CONFIG = """
from pydantic import BaseModel, Field
class Settings(BaseModel):
    things_table: str = Field(alias="THINGS_TABLE")
"""

SYNTHETIC_STORE = """
class Things:
    def __init__(self, client, table):
        self._ddb = client
        self._table = table

    def get(self, key):
        return self._ddb.get_item(TableName=self._table, Key=key)

    def forget(self, key):
        self._ddb.delete_item(TableName=self._table, Key=key)

class Unused:
    def put(self, client):
        client.put_item(TableName="x", Item={})
"""

SYNTHETIC_APP = """
import boto3
from store.things import Things

def handler(event, context, settings=None):
    things = Things(boto3.client("dynamodb"), settings.things_table)
    return things.get(event["key"])
"""


def _synthetic(tmp_path: Path, app: str = SYNTHETIC_APP, tpl: str = SYNTHETIC_TEMPLATE) -> Any:
    (tmp_path / "fn").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "fn" / "app.py").write_text(app)
    (tmp_path / "store" / "things.py").write_text(SYNTHETIC_STORE)
    (tmp_path / "config.py").write_text(SYNTHETIC_CONFIG)
    (tmp_path / "template.yaml").write_text(tpl)
    synthetic = load_template(tmp_path / "template.yaml")
    names = settings_aliases(tmp_path / "config.py")
    idx = build_index(tmp_path, ("fn", "store"), names)
    component = components(synthetic)["Fn"]
    needs, problems = needs_of_calls(synthetic, idx, names, component)
    grants, _ = statements_of(synthetic, component)
    missing = sorted((n.action, n.resource) for n in needs if not is_granted(n, grants))
    return needs, problems, missing, unused_grants(synthetic, needs, grants), synthetic


def test_checker_passes_a_granted_call(tmp_path: Path) -> None:
    needs, problems, missing, _, _ = _synthetic(tmp_path)
    assert problems == []
    assert {(n.action, n.resource) for n in needs} == {
        ("dynamodb:GetItem", "Things"),
        ("kms:Decrypt", "Key"),
    }
    assert missing == []


def test_checker_fails_a_boto3_call_added_without_its_permission(tmp_path: Path) -> None:
    app = SYNTHETIC_APP.replace(
        "    return things.get(", '    things.forget(event["key"])\n    return things.get('
    )
    _, problems, missing, _, _ = _synthetic(tmp_path, app)
    assert problems == []
    assert missing == [("dynamodb:DeleteItem", "Things")]


def test_checker_fails_a_missing_kms_grant(tmp_path: Path) -> None:
    tpl = SYNTHETIC_TEMPLATE.replace("Action: kms:Decrypt", "Action: kms:Encrypt")
    _, _, missing, unused, _ = _synthetic(tmp_path, tpl=tpl)
    assert missing == [("kms:Decrypt", "Key")]
    assert any("kms:Encrypt" in u for u in unused)


def test_checker_fails_a_call_it_cannot_place(tmp_path: Path) -> None:
    app = SYNTHETIC_APP.replace("settings.things_table", '"hard-coded-table"')
    _, problems, _, _, _ = _synthetic(tmp_path, app)
    assert len(problems) == 1 and "cannot tell the resource" in problems[0]


def test_checker_flags_unused_inline_grants_and_unexplained_wildcards(tmp_path: Path) -> None:
    tpl = SYNTHETIC_TEMPLATE.replace(
        "              Resource: !GetAtt Key.Arn\n",
        "              Resource: !GetAtt Key.Arn\n"
        "            - Sid: Everything\n"
        "              Effect: Allow\n"
        "              Action: dynamodb:*\n"
        '              Resource: "*"\n',
    )
    _, _, missing, _, synthetic = _synthetic(tmp_path, tpl=tpl)
    assert missing == []
    assert len(unexplained_wildcards(synthetic)) == 1
    synthetic["Resources"]["Fn"]["Metadata"] = {
        "IamReasons": {"Everything": "a reason long enough to be a reason"}
    }
    assert unexplained_wildcards(synthetic) == []
    assert unused_grants(synthetic, set(), statements_of(synthetic, components(synthetic)["Fn"])[0])


if __name__ == "__main__":  # pragma: no cover - prints the docs table
    print(render_map())
