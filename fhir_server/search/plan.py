"""A search as data: the query string parsed into typed filters, before any adapter sees it.

``parse_query(type, items)`` turns ``[("identifier", "sys|1"), ("_sort", "-date")]`` into a
``Query``. Each filter is one parameter occurrence (AND across filters); a ``Clause``'s
``values`` are its comma-separated alternatives (OR). Forward chains (``patient.identifier=``)
and reverse chains (``_has:Observation:patient:code=``) are ``Chain`` and ``Has`` filters; the
executor (``fhir_server.search.execute``) resolves them to plain clauses over bounded id sets
before an adapter compiles the query to SQL or a MongoDB filter. ``str(query)`` renders it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Union

from fhir_server.errors import invalid, not_supported
from fhir_server.search import composite
from fhir_server.search import params as search_params
from fhir_server.search.normalize import date_range

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Parameters that are not filters: they shape the result (handled by the search interaction).
RESULT_PARAMS = frozenset(
    {"_sort", "_count", "_total", "_summary", "_elements", "_format", "_pretty", "_cursor", "_include",
     "_revinclude"}
)
# Filter parameters answered from the store's own columns, not from index tables.
STORE_PARAMS = {"_id": "token", "_lastUpdated": "date"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "missing", "of-type", "above", "below", "in", "not-in"},
    "reference": {"identifier", "missing", "not"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"above", "below", "missing"},
}
UNSUPPORTED_MODIFIERS = {"in", "not-in", "above", "below"}  # token :above/:below/:in need terminology
MAX_CHAIN = 4


@dataclass(frozen=True, slots=True)
class Value:
    """One alternative of a clause, already typed for its parameter."""

    prefix: str = "eq"
    text: str = ""             # string / uri / reference target / token code
    system: str | None = None  # token system; None: any system; "": explicitly no system
    lo: str | None = None      # date range
    hi: str | None = None
    number: Decimal | None = None
    unit: str | None = None    # quantity code/unit
    parts: tuple["Clause", ...] = ()  # composite: one clause per component, all on one element


@dataclass(frozen=True, slots=True)
class Clause:
    param: str
    type: str
    modifier: str | None
    values: tuple[Value, ...]

    def __str__(self) -> str:
        mod = f":{self.modifier}" if self.modifier else ""
        return f"{self.param}{mod}={','.join(_render(v) for v in self.values)}"


@dataclass(frozen=True, slots=True)
class Chain:
    """``subject:Patient.name=x``: ``param`` references a resource of ``targets`` matching ``inner``."""

    param: str
    targets: tuple[str, ...]
    inner: "Filter"

    def __str__(self) -> str:
        return f"{self.param}:{'|'.join(self.targets)}.{self.inner}"


@dataclass(frozen=True, slots=True)
class Has:
    """``_has:Observation:patient:code=x``: referenced by ``type.param`` of a ``type`` matching ``inner``."""

    type: str
    param: str
    inner: "Filter"

    def __str__(self) -> str:
        return f"_has:{self.type}:{self.param}:{self.inner}"


@dataclass(frozen=True, slots=True)
class Referrers:
    """A resolved ``_has``: referenced by ``param`` of a resource matching ``query`` (plain
    clauses only). The executor hands it to an adapter that probes each candidate for such a
    referrer (``Store.probes_referrers``) instead of listing every referenced id first."""

    param: str
    query: "Query"

    def __str__(self) -> str:
        return f"_has:{self.query.type}:{self.param}:{'&'.join(str(c) for c in self.query.clauses)}"


@dataclass(frozen=True, slots=True)
class InList:
    """``_list=42``: resources that are items of List/42."""

    list_id: str

    def __str__(self) -> str:
        return f"_list={self.list_id}"


Filter = Union[Clause, Chain, Has, Referrers, InList]


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Observation:patient[:Patient]`` (or ``_revinclude``), ``:iterate`` when asked."""

    source: str
    param: str  # "*" for every reference parameter of ``source``
    target: str | None = None
    reverse: bool = False
    iterate: bool = False

    def __str__(self) -> str:
        name = "_revinclude" if self.reverse else "_include"
        return f"{name}{':iterate' if self.iterate else ''}={self.source}:{self.param}" + (
            f":{self.target}" if self.target else "")


@dataclass(frozen=True, slots=True)
class Query:
    type: str
    clauses: tuple[Filter, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()  # (param, descending)
    includes: tuple[Include, ...] = field(default=(), compare=False)
    unknown: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        parts = [str(c) for c in self.clauses]
        if self.sort:
            parts.append("_sort=" + ",".join(("-" if d else "") + p for p, d in self.sort))
        return f"{self.type}?" + "&".join(parts + [str(i) for i in self.includes])


def _render(v: Value) -> str:
    if v.parts:  # a composite alternative, as written
        return v.text
    if v.system is not None:
        return f"{v.system}|{v.text}"
    prefix = "" if v.prefix == "eq" else v.prefix
    return f"{prefix}{v.text}"


class _Unknown(Exception):
    """A parameter this server does not know for the type (collected, or 400 when strict)."""


def parse_query(type: str, items: list[tuple[str, str]], strict: bool = False) -> Query:
    """Parse query items for ``type``. Unknown parameters are collected (or rejected if strict)."""
    clauses: list[Filter] = []
    sort: list[tuple[str, bool]] = []
    includes: list[Include] = []
    unknown: list[str] = []
    for name, raw in items:
        if name == "_sort":
            sort.extend(_sort_keys(type, raw))
            continue
        if name.split(":")[0] in ("_include", "_revinclude"):
            includes.extend(_include(type, name, raw))
            continue
        if name in RESULT_PARAMS:
            continue
        try:
            clauses.append(_filter(type, name, raw, 0))
        except _Unknown as exc:
            if strict:
                raise invalid(f"Unknown or unsupported search parameter '{name}' for {type}: {exc}", name) from None
            unknown.append(name)
    return Query(type, tuple(clauses), tuple(sort), tuple(includes), tuple(unknown))


def _filter(type: str, name: str, raw: str, depth: int) -> Filter:
    if depth > MAX_CHAIN:
        raise invalid(f"Chains deeper than {MAX_CHAIN} links are not supported", name)
    if name == "_list":
        if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", raw):
            raise invalid("_list takes the id of a List (functional lists such as $current-problems are not supported)",
                          name)
        return InList(raw)
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise invalid("_has takes the form _has:Type:reference-param:search-param", name)
        _, htype, hparam, rest = parts
        if htype not in search_params.resource_types():
            raise _Unknown(f"{htype} is not a resource type")
        p = search_params.param(htype, hparam)
        if p is None or p.type != "reference":
            raise _Unknown(f"{hparam} is not a reference parameter of {htype}")
        return Has(htype, hparam, _filter(htype, rest, raw, depth + 1))
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    if dot:
        p = search_params.param(type, code)
        if p is None or p.type != "reference":
            raise _Unknown(f"{code} is not a reference parameter of {type}")
        targets = (modifier,) if modifier else p.target
        if modifier and modifier not in search_params.resource_types():
            raise invalid(f"'{modifier}' is not a resource type", name)
        inner_code = re.split(r"[:.]", rest, maxsplit=1)[0]
        usable = tuple(t for t in targets if inner_code in STORE_PARAMS or search_params.param(t, inner_code)
                       or inner_code == "_has")
        if not usable:
            raise _Unknown(f"no target of {type}.{code} has a parameter '{inner_code}'")
        return Chain(code, usable, _filter_any(usable, rest, raw, depth + 1))
    ptype = STORE_PARAMS.get(code)
    if ptype is None:
        p = search_params.param(type, code)
        if p is None or p.type == "special" or not p.expression or (
                p.type == "composite" and not composite.supported(type, code)):
            raise _Unknown("not supported" if p else "unknown")  # _text, _content, _query: nothing indexed
        ptype = p.type
    if ptype == "composite":
        if modifier:
            raise invalid(f"Modifiers are not allowed on the composite parameter {code}", name)
        return Clause(code, ptype, None, tuple(_composite_values(type, code, raw, name)))
    if modifier:
        _check_modifier(type, code, ptype, modifier, name)
    values = tuple(_values(ptype, modifier, raw, name))
    if ptype == "reference" and modifier not in ("identifier", "missing"):
        values = _typed_references(type, code, modifier, values)
    return Clause(code, ptype, modifier or None, values)


def _typed_references(type: str, code: str, modifier: str | None, values: tuple[Value, ...]) -> tuple[Value, ...]:
    """A bare id (``patient=123``) means ``Type/123`` for the ``:Type`` modifier, else for each
    target type of the parameter; ``Type/id``, absolute URLs and canonicals stay as given."""
    types = (modifier,) if modifier and modifier != "not" else search_params.param(type, code).target
    out = []
    for v in values:
        if "/" in v.text or ":" in v.text or not types:
            out.append(v)
        else:
            out += [Value(text=f"{t}/{v.text}") for t in types]
    return tuple(out)


def _filter_any(types: tuple[str, ...], rest: str, raw: str, depth: int) -> Filter:
    """The inner filter of a chain over several target types: parsed against the first that knows it."""
    for t in types:
        try:
            return _filter(t, rest, raw, depth)
        except _Unknown:
            continue
    raise _Unknown(f"no target type knows '{rest}'")


def _check_modifier(type: str, code: str, ptype: str, modifier: str, name: str) -> None:
    if ptype == "reference" and modifier in search_params.resource_types():
        return
    if code in STORE_PARAMS:  # every resource has an id and a lastUpdated: nothing is missing
        if code == "_id" and modifier == "not":
            return
        raise invalid(f"Modifier :{modifier} is not supported on {code}", name)
    allowed = MODIFIERS.get(ptype, set())
    if modifier not in allowed:
        raise invalid(f"Modifier :{modifier} is not valid for the {ptype} parameter {code}", name)
    if modifier in UNSUPPORTED_MODIFIERS and ptype == "token":
        raise not_supported(f"Modifier :{modifier} on tokens needs terminology services this server does not offer",
                            name)


def _sort_keys(type: str, raw: str):
    for key in raw.split(","):
        key = key.strip()
        if not key.strip("-"):
            continue
        code, desc = key.lstrip("-"), key.startswith("-")
        if code not in STORE_PARAMS:
            p = search_params.param(type, code)
            if p is None or p.type in ("composite", "special"):
                raise invalid(f"Cannot sort {type} by '{code}': no such search parameter", "_sort")
        yield code, desc


def _include(type: str, name: str, raw: str):
    kind, _, mod = name.partition(":")
    if mod not in ("", "iterate", "recurse"):
        raise invalid(f"Unknown modifier :{mod} on {kind}", name)
    iterate = mod in ("iterate", "recurse")
    reverse = kind == "_revinclude"
    for value in raw.split(","):
        value = value.strip()
        if value == "*":
            yield Include(type, "*", None, reverse, iterate)
            continue
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise invalid(f"{kind} takes SourceType:search-param[:TargetType], not '{value}'", name)
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if source not in search_params.resource_types():
            raise invalid(f"'{source}' is not a resource type", name)
        if code != "*":
            p = search_params.param(source, code)
            if p is None or p.type != "reference":
                raise invalid(f"'{code}' is not a reference parameter of {source}", name)
        if not reverse and not iterate and source != type:
            raise invalid(f"_include={value} names {source}, but this search is for {type} (use :iterate)", name)
        if target and target not in search_params.resource_types():
            raise invalid(f"'{target}' is not a resource type", name)
        yield Include(source, code, target, reverse, iterate)


def _split(raw: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` (a comma, or a composite's ``$``) where not escaped with a backslash."""
    return re.split(r"(?<!\\)" + re.escape(separator), raw)


def _unescape(s: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", s)


def _prefix(s: str) -> tuple[str, str]:
    if len(s) > 2 and s[:2] in PREFIXES and not s[2].isalpha():
        return s[:2], s[2:]
    return "eq", s


def _values(ptype: str, modifier: str, raw: str, name: str):
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise invalid(f":missing takes true or false, not '{raw}'", name)
        yield Value(text=raw)
        return
    for part in _split(raw):
        if ptype == "token" and modifier == "of-type":
            pieces = re.split(r"(?<!\\)\|", part)
            if len(pieces) != 3:
                raise invalid(f":of-type takes type-system|type-code|value, not '{part}'", name)
            yield Value(system=f"{_unescape(pieces[0])}|{_unescape(pieces[1])}", text=_unescape(pieces[2]))
        elif (ptype == "token" and modifier != "text") or modifier == "identifier":
            m = re.match(r"^((?:[^|\\]|\\.)*)\|(.*)$", part)
            if m:
                yield Value(system=_unescape(m.group(1)), text=_unescape(m.group(2)))
            else:
                yield Value(text=_unescape(part))
        elif ptype == "date":
            prefix, text = _prefix(part)
            rng = date_range(text)
            if rng is None:
                raise invalid(f"Invalid date '{part}' in search parameter '{name}'", name)
            yield Value(prefix=prefix, text=text, lo=rng[0], hi=rng[1])
        elif ptype in ("number", "quantity"):
            prefix, text = _prefix(part)
            num, _, rest = text.partition("|")
            try:
                number = Decimal(num)
            except InvalidOperation:
                raise invalid(f"Invalid number '{part}' in search parameter '{name}'", name) from None
            if not number.is_finite():
                raise invalid(f"Invalid number '{part}' in search parameter '{name}'", name)
            system, _, unit = rest.partition("|") if rest else (None, "", None)
            yield Value(prefix=prefix, text=text, number=number, system=system or None, unit=unit or None)
        else:
            yield Value(text=_unescape(part))


def _composite_values(type: str, code: str, raw: str, name: str):
    """``a$b`` alternatives of a composite: each component parsed as its own parameter's value
    (``\\$`` and ``\\,`` escape), prefixes included (``8480-6$gt140``)."""
    components = search_params.component_params(type, code)
    for alternative in _split(raw):
        pieces = _split(alternative, "$")
        if len(pieces) != len(components) or not all(pieces):
            raise invalid(f"{code} takes {len(components)} values joined by '$' "
                          f"({'$'.join(c.code for c in components)}), not '{alternative}'", name)
        parts = []
        for component, piece in zip(components, pieces):
            values = tuple(_values(component.type, None, piece, name))
            if component.type == "reference":
                values = _typed_references(type, component.code, None, values)
            parts.append(Clause(component.code, component.type, None, values))
        yield Value(text=alternative, parts=tuple(parts))
