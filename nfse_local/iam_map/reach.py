"""Reachability: which functions and methods of the index a component's entry modules can run.

Rapid type analysis: a method counts only when its name is called from reached code AND its
class is constructed in reached code. A class talks to what it was constructed with: the
`settings.<field>` arguments at its construction sites (`bound_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nfse_local.iam_map.sources import Func, SourceIndex


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
