"""The sources side of the IAM map: the Python modules of a component, parsed (never imported).

`build_index` reads every module of the given packages into a `SourceIndex`: per function and
method, the names it calls (bare, on a receiver, on a receiver of known type), the settings
fields handed to each call, and every call whose name is a boto3 operation of a service the
code builds clients for. botocore's service models turn an operation into its IAM action.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

# Operation -> IAM action where the two differ (otherwise "<signing name>:<OperationName>").
ACTION_EXCEPTIONS = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
}

# Method names builtin containers and strings also have (`answer.get(...)`): such a call counts
# only when its receiver's type is known (an annotated parameter or attribute, or a variable
# assigned a constructor call), so `dict.get` does not make every `get` method reachable.
AMBIGUOUS = frozenset(
    name
    for kind in (dict, list, set, frozenset, tuple, str, bytes)
    for name in dir(kind)
    if not name.startswith("_")
)


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
        """Every class of that name, in any module."""
        return self._classes_by_name.get(name, [])

    @cached_property
    def _classes_by_name(self) -> dict[str, list[Klass]]:
        by_name: dict[str, list[Klass]] = {}
        for module in self.modules.values():
            for klass in module.classes.values():
                by_name.setdefault(klass.name, []).append(klass)
        return by_name


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
    # Imports anywhere: a function may import what it builds (nfse_core.bootstrap does).
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
            imports.update(f"{node.module}.{alias.name}" for alias in node.names)
    for node in tree.body:
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
