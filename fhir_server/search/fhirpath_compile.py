"""Compile the FHIRPath subset used by SearchParameter expressions into plain path walkers.

An expression is parsed once, then compiled against the FHIR element types (``ElementTypes``)
into ``Branch``es: each branch is a tuple of collection steps (``list -> list`` over the
resource's JSON values) whose result has ONE statically known FHIR type. Choice elements are
expanded per type (``Observation.effective`` -> ``effectiveDateTime`` as dateTime,
``effectivePeriod`` as Period, ...), and ``as``/``ofType`` prune those branches at compile time,
so at write time a branch is a few dict lookups and the caller picks the normaliser per branch
type once, at compile time.

Supported: paths over arrays, ``|``, parentheses, ``[n]``, ``as``/``is``/``as()``/``ofType()``,
``where(...)`` (fast paths for ``field='literal'`` and ``resolve() is Type``), ``extension('url')``,
``exists()``, ``empty()``, ``not()``, ``first()``, ``=``/``!=``, ``and``/``or``, literals.
Anything else raises ``Unsupported``; the caller then falls back to fhirpathpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.search.fhirpath_parse import Unsupported, parse

# (ctx_type, element name) -> (types, is_choice) or None when ctx_type has no such element.
ElementTypes = Callable[[str, str], "tuple[tuple[str, ...], bool] | None"]
Step = Callable[[list], list]

ABSTRACT_ROOTS = ("Resource", "DomainResource")
# FHIR type -> its specialisations, for ``as``/``is``/``ofType`` (lower case)
_SUBTYPES = {
    "quantity": {"age", "duration", "distance", "count", "simplequantity", "moneyquantity"},
    "uri": {"url", "canonical", "oid", "uuid"},
    "string": {"code", "id", "markdown"},
    "integer": {"positiveint", "unsignedint"},
}
# elements every FHIR element has, whether or not the element table lists them for a type
_UNIVERSAL = {"extension": (("Extension",), False), "modifierExtension": (("Extension",), False)}


@dataclass(frozen=True, slots=True)
class Branch:
    steps: tuple[Step, ...]
    type: str

    def run(self, focus: list) -> list:
        for step in self.steps:
            if not focus:
                return focus
            focus = step(focus)
        return focus


def compile_expression(expression: str, root_type: str, elements: ElementTypes) -> list[Branch]:
    """Branches of ``expression`` evaluated on a resource of ``root_type`` (focus ``[resource]``)."""
    return _Compiler(elements).compile(parse(expression), root_type)


def run_all(branches: list[Branch]) -> Step:
    """One step evaluating every branch on the same focus and concatenating the results."""
    if len(branches) == 1:
        return branches[0].run
    runs = tuple(b.run for b in branches)
    return lambda focus: [x for run in runs for x in run(focus)]


def reference_type(value: Any) -> str | None:
    """The resource type a Reference points to (what ``resolve() is T`` tests), or None."""
    if type(value) is not dict:
        return None
    ref = value.get("reference")
    if type(ref) is str and ref and ref[0] != "#":
        parts = ref.split("?", 1)[0].split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
        if "?" in ref and len(parts) == 1:
            return parts[0]
    kind = value.get("type")
    return kind.rsplit("/", 1)[-1] if type(kind) is str else None


def _child(key: str) -> Step:
    def step(focus: list) -> list:
        out: list = []
        for v in focus:
            if type(v) is dict:
                x = v.get(key)
                if x is not None:
                    if type(x) is list:
                        out.extend(x)
                    else:
                        out.append(x)
        return out

    step.key = key  # type: ignore[attr-defined]  # lets callers inline a first lookup
    return step


def _where(pred: Callable[[Any], bool]) -> Step:
    return lambda focus: [v for v in focus if pred(v)]


def _field_equals(key: str, literal: Any) -> Callable[[Any], bool]:
    def pred(v: Any) -> bool:
        if type(v) is not dict:
            return False
        x = v.get(key)
        return x == literal or (type(x) is list and literal in x)

    return pred


def _type_matches(actual: str, wanted: str) -> bool:
    a, w = actual.lower(), wanted.lower()
    return a == w or a in _SUBTYPES.get(w, ())


def _truth(c: list) -> bool | None:
    if len(c) != 1:
        return None
    return c[0] if type(c[0]) is bool else True


def _equal(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return a == b


def _binary(op: str, left: Step, right: Step) -> Step:
    def step(focus: list) -> list:
        a, b = left(focus), right(focus)
        if op in ("=", "!="):
            if len(a) != 1 or len(b) != 1:
                return []
            return [_equal(a[0], b[0]) == (op == "=")]
        x, y = _truth(a), _truth(b)
        if op == "and":
            return [False] if x is False or y is False else [True] if x and y else []
        return [True] if x is True or y is True else [False] if x is False and y is False else []

    return step


class _Compiler:
    def __init__(self, elements: ElementTypes) -> None:
        self.elements = elements

    def compile(self, node: tuple, ctx: str) -> list[Branch]:
        kind = node[0]
        if kind == "member":
            return self.member(node[1], node[2], ctx)
        if kind == "union":
            return self.compile(node[1], ctx) + self.compile(node[2], ctx)
        if kind == "as":
            return [b for b in self.compile(node[1], ctx) if _type_matches(b.type, node[2])]
        if kind == "is":
            return self.is_type(node[1], node[2], ctx)
        if kind == "call":
            return self.call(node[1], node[2], node[3], ctx)
        if kind == "index" and node[2][0] == "lit" and type(node[2][1]) is int:
            n = node[2][1]
            return self.single(node[1], ctx, lambda focus: focus[n : n + 1])
        if kind == "bin":
            left = run_all(self.compile(node[2], ctx))
            right = run_all(self.compile(node[3], ctx))
            return [Branch((_binary(node[1], left, right),), "boolean")]
        if kind == "lit":
            value = node[1]
            kind_name = {bool: "boolean", str: "string", int: "integer"}.get(type(value), "decimal")
            return [Branch((lambda focus: [value],), kind_name)]
        raise Unsupported(f"node {kind}")

    def base(self, left: tuple | None, ctx: str) -> list[Branch]:
        return [Branch((), ctx)] if left is None else self.compile(left, ctx)

    def single(self, left: tuple | None, ctx: str, step: Step) -> list[Branch]:
        branches = self.base(left, ctx)
        if len(branches) != 1:
            raise Unsupported("collection function over several typed branches")
        return [Branch(branches[0].steps + (step,), branches[0].type)]

    def member(self, left: tuple | None, name: str, ctx: str) -> list[Branch]:
        if left is None and self.elements(ctx, name) is None and name[:1].isupper():
            if name == ctx or name in ABSTRACT_ROOTS:
                return [Branch((), name)]  # type filter on the root resource
            return []  # another resource type: never matches
        out = []
        for b in self.base(left, ctx):
            found = self.elements(b.type, name) or _UNIVERSAL.get(name)
            if found is None:
                raise Unsupported(f"unknown element {b.type}.{name}")
            types, choice = found
            if choice:
                out += [Branch(b.steps + (_child(name + t[0].upper() + t[1:]),), t) for t in types]
            else:
                out.append(Branch(b.steps + (_child(name),), types[0]))
        return out

    def is_type(self, left: tuple, type_name: str, ctx: str) -> list[Branch]:
        if left[0] == "call" and left[2] == "resolve" and not left[3]:
            step = lambda focus: [reference_type(focus[0]) == type_name] if len(focus) == 1 else []  # noqa: E731
            return self.single(left[1], ctx, step)
        branches = self.compile(left, ctx)
        matching = run_all([b for b in branches if _type_matches(b.type, type_name)])
        every = run_all(branches)
        return [Branch((lambda focus: [bool(matching(focus))] if every(focus) else [],), "boolean")]

    def call(self, left: tuple | None, name: str, args: list, ctx: str) -> list[Branch]:
        if name in ("as", "ofType") and len(args) == 1 and args[0][0] == "member":
            return [b for b in self.base(left, ctx) if _type_matches(b.type, args[0][2])]
        if name == "where" and len(args) == 1:
            return [Branch(b.steps + (_where(self.predicate(args[0], b.type)),), b.type) for b in self.base(left, ctx)]
        if name == "extension" and len(args) == 1 and args[0][0] == "lit":
            step = _where(_field_equals("url", args[0][1]))
            return [Branch(b.steps + (_child("extension"), step), "Extension") for b in self.base(left, ctx)]
        if name in ("exists", "empty") and len(args) <= 1:
            branches = self.base(left, ctx)
            if args:
                branches = self.call(left, "where", args, ctx)
            every, want = run_all(branches), name == "exists"
            return [Branch((lambda focus: [bool(every(focus)) == want],), "boolean")]
        if name == "not" and not args:
            every = run_all(self.base(left, ctx))
            return [Branch((lambda focus: [not t] if (t := _truth(every(focus))) is not None else [],), "boolean")]
        if name == "first" and not args:
            return self.single(left, ctx, lambda focus: focus[:1])
        raise Unsupported(f"function {name}()")

    def predicate(self, cond: tuple, ctx: str) -> Callable[[Any], bool]:
        if cond[0] == "bin" and cond[1] == "=" and cond[2][0] == "member" and cond[2][1] is None:
            found = self.elements(ctx, cond[2][2])
            if cond[3][0] == "lit" and found is not None and not found[1]:
                return _field_equals(cond[2][2], cond[3][1])
        if cond[0] == "is" and cond[1] == ("call", None, "resolve", []):
            wanted = cond[2]
            return lambda v: reference_type(v) == wanted
        every = run_all(self.compile(cond, ctx))
        return lambda v: every([v]) == [True]
