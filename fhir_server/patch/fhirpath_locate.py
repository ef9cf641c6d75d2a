"""Find *where* in a FHIR JSON resource a FHIRPath expression points (for FHIRPath Patch).

``fhirpathpy`` answers with values, a patch needs locations. ``locate`` walks the path itself
for the subset patches use - member names (choice elements included, ``Observation.value``
finds ``valueQuantity``), ``[n]`` indexers, ``where()``, ``first()``, ``last()``, ``tail()``,
``skip()``, ``take()``, ``single()``, ``extension(url)``, ``ofType()``/``as()`` - and evaluates
``where()`` criteria with fhirpathpy on each candidate. Any other step (or a whole expression
with operators) is evaluated by fhirpathpy on a copy of the resource whose objects carry a
location tag, so it can still select objects (not computed values or bare primitives).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterator

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.patch import r4_model

R4 = models["r4"]
TAG = "__fhirpatch_loc__"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|`[^`]+`")
_INT = re.compile(r"-?\d+")


class InvalidPath(ValueError):
    """The expression is not valid FHIRPath (or fhirpathpy cannot evaluate it)."""


class LocateError(ValueError):
    """The expression is valid but does not select elements of the resource."""


@dataclass(eq=False)
class Loc:
    """One element of the resource: ``container[key]`` or ``container[key][index]``."""

    value: Any                  # the JSON value (None: a primitive that only has extensions)
    container: dict | None      # the object holding ``key`` (None for the resource itself)
    key: str | None             # JSON property (``valueQuantity``, not ``value``)
    index: int | None           # position in the array, None for a single value
    parent: "Loc | None"
    name: str | None            # FHIRPath name (``value``)
    info: r4_model.ElementInfo | None
    type: str | None            # concrete FHIR type when known

    @property
    def base(self) -> str | None:
        """Type name or backbone path its children are defined under (a fhirpathpy ``base``)."""
        if self.type is None or self.type in r4_model.BACKBONE:
            return self.info.path if self.info else None
        return self.type

    @property
    def is_object(self) -> bool:
        return isinstance(self.value, dict)

    def sidecar(self, create: bool = False) -> dict | None:
        """The ``_key`` object holding a primitive's id/extension."""
        skey = "_" + self.key
        side = self.container.get(skey)
        if self.index is None:
            if side is None and create:
                side = self.container[skey] = {}
            return side
        if not isinstance(side, list):
            if not create:
                return None
            side = self.container[skey] = [None] * len(self.container.get(self.key) or [])
        while len(side) <= self.index:
            side.append(None)
        if side[self.index] is None and create:
            side[self.index] = {}
        return side[self.index]


def root_loc(resource: dict) -> Loc:
    rt = resource.get("resourceType")
    return Loc(resource, None, None, None, None, rt, None, rt)


def child_locs(loc: Loc) -> Iterator[Loc]:
    if loc.is_object:
        holder, base = loc.value, loc.base
    else:  # a primitive: its id/extension live in the sidecar
        holder, base = loc.sidecar() if loc.container is not None else None, "Element"
        if not isinstance(holder, dict):
            return
    seen: set[str] = set()
    for raw in list(holder):
        key = raw[1:] if raw.startswith("_") else raw
        if key in seen or key in ("resourceType", TAG) or not key:
            continue
        seen.add(key)
        name, info, typ = r4_model.resolve_key(base, key)
        val, side = holder.get(key), holder.get("_" + key)
        if isinstance(val, list) or isinstance(side, list):
            vals = val if isinstance(val, list) else []
            sides = side if isinstance(side, list) else []
            items = [(i, vals[i] if i < len(vals) else None) for i in range(max(len(vals), len(sides)))]
        else:
            items = [(None, val)]
        for i, v in items:
            t = typ
            if isinstance(v, dict) and "resourceType" in v and (t is None or t == "Resource"):
                t = v["resourceType"]
            yield Loc(v, holder, key, i, loc, name, info, t)


def children(loc: Loc, name: str) -> list[Loc]:
    return [c for c in child_locs(loc) if c.name == name or c.key == name]


def check_syntax(expr: str) -> None:
    """Raise InvalidPath unless ``expr`` is one complete FHIRPath expression."""

    class _Raise(ErrorListener):
        def syntaxError(self, recognizer, offending, line, column, msg, e):  # noqa: N802
            raise InvalidPath(f"invalid FHIRPath at column {column + 1}: {msg}")

    try:
        lexer = FHIRPathLexer(InputStream(expr))
        lexer.removeErrorListeners()
        lexer.addErrorListener(_Raise())
        stream = CommonTokenStream(lexer)
        parser = FHIRPathParser(stream)
        parser.removeErrorListeners()
        parser.addErrorListener(_Raise())
        parser.expression()
        if stream.LA(1) != Token.EOF:
            raise InvalidPath(f"invalid FHIRPath: unexpected '{stream.LT(1).text}'")
    except InvalidPath:
        raise
    except Exception as exc:  # antlr recognition errors
        raise InvalidPath(f"invalid FHIRPath: {exc}") from exc


# --------------------------------------------------------------------------- path steps
@dataclass
class Step:
    name: str
    args: str | None            # raw argument text of a function call, None for a member
    indexers: list[str]
    text: str


def split_steps(expr: str) -> list[Step] | None:
    """``a.b(x).c[0]`` -> steps; None when the expression is not a plain dotted path."""
    steps, pos, n = [], 0, len(expr)
    while True:
        m = _IDENT.match(expr, pos)
        if not m:
            return None
        start, name, pos, args = pos, m.group().strip("`"), m.end(), None
        if pos < n and expr[pos] == "(":
            end = _closing(expr, pos, "(", ")")
            if end is None:
                return None
            args, pos = expr[pos + 1:end].strip(), end + 1
        indexers = []
        while pos < n and expr[pos] == "[":
            end = _closing(expr, pos, "[", "]")
            if end is None:
                return None
            indexers.append(expr[pos + 1:end].strip())
            pos = end + 1
        steps.append(Step(name, args, indexers, expr[start:pos]))
        if pos == n:
            return steps
        if expr[pos] != ".":
            return None
        pos += 1


def _closing(expr: str, pos: int, open_: str, close: str) -> int | None:
    depth, i, quote = 0, pos, None
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`":
            quote = c
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


# --------------------------------------------------------------------------- evaluation
def normalise(expr: str) -> str:
    """Quote member names that are FHIRPath keywords (``Patient.text.div`` -> ``text.`div```)."""
    out, i, quote = [], 0, None
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`":
            quote = c
            out.append(c)
        elif c == "." and (m := _KEYWORD_MEMBER.match(expr, i)):
            out.append(f".`{m.group(1)}`")
            i = m.end() - 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


_KEYWORD_MEMBER = re.compile(r"\.\s*(div|mod)(?![A-Za-z0-9_`(])")


def locate(resource: dict, expr: str) -> list[Loc]:
    """The elements of ``resource`` that ``expr`` selects, in FHIRPath order."""
    expr = normalise(expr.strip())
    check_syntax(expr)
    root = root_loc(resource)
    steps = split_steps(expr)
    if steps is None:
        return _tagged_eval(root, expr)
    cur: list[Loc] = [root]
    for i, step in enumerate(steps):
        if i == 0 and step.args is None and _is_root_type(resource, step.name):
            nxt: list[Loc] | None = [root]
        elif i == 0 and step.args is None and step.name[:1].isupper() and not children(root, step.name):
            nxt = []  # a type name that is not this resource's
        else:
            nxt = _step(cur, step, resource)
        if nxt is not None:
            nxt = _indexers(nxt, step.indexers)
        if nxt is None:  # not one of ours: let fhirpathpy evaluate the prefix
            try:
                nxt = _tagged_eval(root, ".".join(s.text for s in steps[: i + 1]))
            except LocateError:  # the prefix yields bare values: maybe the whole path does not
                return _tagged_eval(root, expr)
        cur = nxt
    return cur


def _is_root_type(resource: dict, name: str) -> bool:
    rt = resource.get("resourceType")
    return bool(rt) and name in r4_model.ancestors(rt)


def _indexers(locs: list[Loc], indexers: list[str]) -> list[Loc] | None:
    for raw in indexers:
        if not _INT.fullmatch(raw):
            return None
        i = int(raw)
        locs = [locs[i]] if 0 <= i < len(locs) else []
    return locs


def _step(cur: list[Loc], step: Step, resource: dict) -> list[Loc] | None:
    name, args = step.name, step.args
    if args is None:
        return [c for loc in cur for c in children(loc, name)]
    if name == "where" and args:
        ctx = {"resource": copy.deepcopy(resource)}
        ctx["rootResource"] = ctx["resource"]
        return [loc for loc in cur if _criteria(loc, args, ctx)]
    if name in ("first", "last", "tail", "single") and not args:
        if name == "single" and len(cur) > 1:
            raise LocateError(f"single() found {len(cur)} elements")
        return {"first": cur[:1], "last": cur[-1:], "tail": cur[1:], "single": cur}[name]
    if name in ("skip", "take") and _INT.fullmatch(args or ""):
        k = max(int(args), 0)
        return cur[k:] if name == "skip" else cur[:k]
    if name == "extension" and args and args[0] == args[-1] == "'" and "\\" not in args:
        url = args[1:-1]
        return [c for loc in cur for c in children(loc, "extension")
                if isinstance(c.value, dict) and c.value.get("url") == url]
    if name in ("ofType", "as") and args and re.fullmatch(r"(FHIR\.|System\.)?`?[A-Za-z]+`?", args):
        wanted = args.split(".")[-1].strip("`")
        return [loc for loc in cur if _is_type(loc, wanted)]
    return None


def _is_type(loc: Loc, wanted: str) -> bool:
    if loc.type is None:
        return True  # unknown type: let it through rather than guess
    chain = r4_model.ancestors(loc.type)
    return wanted in chain or (wanted[:1].lower() + wanted[1:]) in chain


def _criteria(loc: Loc, criteria: str, ctx: dict) -> bool:
    path: str | dict = {"base": loc.base, "expression": criteria} if loc.base and loc.container else criteria
    try:
        result = fhirpathpy.evaluate(copy.deepcopy(loc.value), path, ctx, model=R4)
    except Exception as exc:
        raise InvalidPath(f"cannot evaluate where({criteria}): {exc}") from exc
    return result == [True]


def _tagged_eval(root: Loc, expr: str) -> list[Loc]:
    """Evaluate ``expr`` with fhirpathpy; map the objects it returns back to locations."""
    by_tag: dict[int, Loc] = {}

    def walk(loc: Loc) -> None:
        if loc.is_object:
            by_tag[len(by_tag)] = loc
            loc.value[TAG] = len(by_tag) - 1
        for c in child_locs(loc):
            walk(c)

    try:
        walk(root)
        tagged = copy.deepcopy(root.value)
    finally:
        for loc in by_tag.values():
            loc.value.pop(TAG, None)
    try:
        results = fhirpathpy.evaluate(tagged, expr, {"resource": tagged, "rootResource": tagged}, model=R4)
    except Exception as exc:
        raise InvalidPath(f"cannot evaluate '{expr}': {exc}") from exc
    out: list[Loc] = []
    for r in results:
        if not (isinstance(r, dict) and isinstance(r.get(TAG), int) and r[TAG] in by_tag):
            raise LocateError(f"'{expr}' selects a value that is not an element patch can address")
        if by_tag[r[TAG]] not in out:
            out.append(by_tag[r[TAG]])
    return out
