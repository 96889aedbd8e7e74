"""Reachability: which functions and methods of the index a component's entry modules can run.

Rapid type analysis: a method counts only when its name is called from reached code AND its
class is constructed in reached code. A class talks to what it was constructed with: the
`settings.<field>` arguments at its construction sites (`bound_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from nfse_local.iam_map.sources import Func, Klass, SourceIndex


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


@dataclass
class _Walk:
    """The state of a reachability walk: what is in scope, and the classes constructed so far."""

    index: SourceIndex
    modules: set[str]
    classes: dict[str, Klass]
    functions: dict[str, Func]
    live: set[str] = field(default_factory=set)

    def construct(self, func: Func) -> bool:
        """Count the classes `func` constructs as live; True if one is new."""
        built = {name for name in func.bare_calls if name in self.classes}
        if "cls" in func.bare_calls and func.cls:
            built.add(func.cls)
        new = built - self.live
        self.live |= new
        return bool(new)

    def callees(self, func: Func) -> list[Func]:
        """What `func` may call, given the classes live so far."""
        names = func.bare_calls | func.attr_calls
        found = [self.functions[n] for n in names if n in self.functions]
        for receiver, attr in func.class_attr_calls:
            if receiver in self.classes:
                found.extend(_lookup(self.index, self.modules, receiver, attr))
        for name in func.attr_calls:
            for cls in self.live:
                found.extend(_lookup(self.index, self.modules, cls, name))
        for receiver_type, name in func.typed_calls:
            found.extend(self._typed_callees(func, receiver_type, name))
        return found

    def _typed_callees(self, func: Func, receiver_type: str, name: str) -> Iterator[Func]:
        typed = receiver_type
        if typed.endswith("()"):
            typed = (self.functions.get(typed[:-2]) or func).returns or ""
        # A Protocol that declares the method (itself or through the Protocols it extends)
        # stands for every live class; a class for itself and its subclasses.
        protocol = any("Protocol" in k.bases for k in self.index.classes(typed)) and any(
            True for _ in _lookup(self.index, self.modules, typed, name)
        )
        for cls in self.live:
            if protocol or typed in _ancestry(self.index, cls):
                yield from _lookup(self.index, self.modules, cls, name)

    def initialized(self) -> list[Func]:
        """Constructed objects are initialized, and callable ones are there to be called; an
        external adapter's methods all count."""
        found: list[Func] = []
        for cls in self.live:
            for special in ("__init__", "__post_init__", "__call__"):
                found.extend(_lookup(self.index, self.modules, cls, special))
            if self.classes[cls].external:
                found.extend(self.classes[cls].methods.values())
        return found


def reach(index: SourceIndex, entries: list[str]) -> Reach:
    """What the entry modules can run: their functions, module code, and the fixed point of
    calls from there."""
    modules = import_closure(index, entries)
    mods = [index.modules[m] for m in sorted(modules)]
    classes = {k.name: k for m in mods for k in m.classes.values()}
    functions = {name: f for m in mods for name, f in m.functions.items()}
    walk = _Walk(index, modules, classes, functions)
    reached: dict[str, Func] = {m.toplevel.where: m.toplevel for m in mods}
    for entry in entries:
        reached.update({f.where: f for f in index.modules[entry].functions.values()})
    changed = True
    while changed:
        changed = False
        for func in list(reached.values()):
            changed |= walk.construct(func)
            for target in [*walk.callees(func), *walk.initialized()]:
                if target.where not in reached:
                    reached[target.where] = target
                    changed = True
    return Reach(reached, walk.live, _constructions(reached.values(), classes))


def _constructions(
    reached: Iterable[Func], classes: Mapping[str, Klass]
) -> dict[str, list[tuple[frozenset[str], str | None]]]:
    """class -> its construction sites in reached code: (settings fields, the building class)."""
    constructions: dict[str, list[tuple[frozenset[str], str | None]]] = {}
    for func in reached:
        for callee, fields in func.calls_with_fields:
            if callee in classes:
                constructions.setdefault(callee, []).append((fields, func.cls))
            elif callee == "cls" and func.cls:
                constructions.setdefault(func.cls, []).append((fields, func.cls))
    return constructions


def bound_fields(found: Reach, cls: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The settings fields a class was constructed with (inherited from its builder if none)."""
    fields: set[str] = set()
    for site_fields, owner in found.constructions.get(cls, []):
        if site_fields:
            fields |= site_fields
        elif owner and owner != cls and owner not in seen:
            fields |= bound_fields(found, owner, seen | {cls})
    return fields
