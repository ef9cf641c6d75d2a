"""A search as data: the query string parsed into typed clauses, before any adapter sees it.

``parse_query(type, items)`` turns ``[("identifier", "sys|1"), ("_sort", "-date")]`` into a
``Query``. Each ``Clause`` is one parameter occurrence (AND across clauses); its ``values`` are
the comma-separated alternatives (OR). Adapters compile a ``Query`` to SQL or a MongoDB filter.
``str(query)`` renders it readably for logs and explain output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from fhir_server.errors import invalid
from fhir_server.search import params as search_params
from fhir_server.search.normalize import date_range

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Parameters that are not filters: they shape the result (handled by the search interaction).
RESULT_PARAMS = frozenset(
    {"_sort", "_count", "_total", "_summary", "_elements", "_format", "_pretty", "_cursor"}
)
# Filter parameters answered from the store's own columns, not from index tables.
STORE_PARAMS = {"_id": "token", "_lastUpdated": "date"}


@dataclass(frozen=True, slots=True)
class Value:
    """One alternative of a clause, already typed for its parameter."""

    prefix: str = "eq"
    text: str = ""           # string / uri / reference target / token code
    system: str | None = None  # token system; None: any system; "": explicitly no system
    lo: str | None = None     # date range, or number/quantity lower bound as str(Decimal)
    hi: str | None = None
    number: Decimal | None = None
    unit: str | None = None   # quantity code/unit


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
class Query:
    type: str
    clauses: tuple[Clause, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()  # (param, descending)
    unknown: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.type}?" + "&".join(str(c) for c in self.clauses)


def _render(v: Value) -> str:
    if v.system is not None:
        return f"{v.system}|{v.text}"
    prefix = "" if v.prefix == "eq" else v.prefix
    return f"{prefix}{v.text}"


def parse_query(type: str, items: list[tuple[str, str]], strict: bool = False) -> Query:
    """Parse query items for ``type``. Unknown parameters are collected (or rejected if strict)."""
    clauses: list[Clause] = []
    sort: list[tuple[str, bool]] = []
    unknown: list[str] = []
    for name, raw in items:
        if name == "_sort":
            sort.extend((k.lstrip("-"), k.startswith("-")) for k in raw.split(",") if k.strip("-"))
            continue
        if name in RESULT_PARAMS:
            continue
        code, _, modifier = name.partition(":")
        ptype = STORE_PARAMS.get(code)
        if ptype is None:
            p = search_params.param(type, code)
            if p is None or p.type in ("composite", "special"):
                if strict:
                    raise invalid(f"Unknown or unsupported search parameter '{name}' for {type}", name)
                unknown.append(name)
                continue
            ptype = p.type
        clauses.append(Clause(code, ptype, modifier or None, tuple(_values(ptype, modifier, raw, name))))
    return Query(type, tuple(clauses), tuple(sort), tuple(unknown))


def _split(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape ``\\,`` ``\\|`` ``\\$``."""
    return re.split(r"(?<!\\),", raw)


def _unescape(s: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", s)


def _prefix(s: str) -> tuple[str, str]:
    if len(s) > 2 and s[:2] in PREFIXES and not s[2].isalpha():
        return s[:2], s[2:]
    return "eq", s


def _values(ptype: str, modifier: str, raw: str, name: str):
    for part in _split(raw):
        if (ptype == "token" and modifier != "text") or modifier == "identifier":
            if modifier == "missing":
                yield Value(text=part)
                continue
            m = re.match(r"^((?:[^|\\]|\\.)*)\|(.*)$", part)
            if m:
                yield Value(system=_unescape(m.group(1)), text=_unescape(m.group(2)))
            else:
                yield Value(text=_unescape(part))
        elif ptype == "date" and modifier != "missing":
            prefix, text = _prefix(part)
            rng = date_range(text)
            if rng is None:
                raise invalid(f"Invalid date '{part}' in search parameter '{name}'", name)
            yield Value(prefix=prefix, text=text, lo=rng[0], hi=rng[1])
        elif ptype in ("number", "quantity") and modifier != "missing":
            prefix, text = _prefix(part)
            num, _, rest = text.partition("|")
            try:
                number = Decimal(num)
            except InvalidOperation:
                raise invalid(f"Invalid number '{part}' in search parameter '{name}'", name) from None
            system, _, unit = rest.partition("|") if rest else (None, "", None)
            yield Value(prefix=prefix, text=text, number=number, system=system or None, unit=unit or None)
        else:
            yield Value(text=_unescape(part))
