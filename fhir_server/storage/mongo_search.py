"""MongoDB search documents and the compilation of a search ``Query`` into a filter over them.

A current resource document carries its index values in ``s`` (see ``index_doc``), one array
per parameter code, so every clause becomes a condition on ``s.<code>`` that a multikey index
can answer:

- token ``s.<code>``: ``"code"``, ``"system|code"`` (``"|code"`` without a system) and
  ``"system|"``; ``|`` and ``\\`` inside a system or code are backslash-escaped, so each query
  form (``code``, ``system|code``, ``|code``, ``system|``) is one equality. ``:text`` searches
  the folded display/text in ``s.<code>:text`` by anchored prefix; a Reference's identifier is
  a token under ``s.<code>:identifier``;
- string ``s.<code>``: folded values (prefix: anchored regex, ``:contains``: regex), the exact
  values in ``s.<code>:exact``;
- date ``s.<code>``: ``{lo, hi}`` UTC instant strings of the fixed form of ``values.py``
  (string order is time order, and microseconds survive: a BSON datetime keeps milliseconds);
  a condition on both ends of one range is an ``$elemMatch``, one on a single end a dotted path
  (``s.date.lo``/``s.date.hi``), and an "or" of two ends is an ``$or`` of dotted paths;
  ``ge``/``le`` (R4 range semantics, as on SQLite) are such an ``$or``;
- reference and uri ``s.<code>``: the target / uri string (``:below``: anchored regex,
  ``:above``: ``$in`` of the query's prefixes); the plan has already made a bare id ``Type/id``;
- number ``s.<code>``: Decimal128, quantity ``s.<code>``: ``{v, s, c, cv, cc}`` with Decimal128
  values. Decimal128, not float: FHIR's implicit precision range (``eq5.40`` is [5.395, 5.405))
  is exact in decimal and the stored value is the resource's exact decimal;
- parameter presence (``:missing``): the ``s.<code>`` field exists (an empty array when a
  token has only text);
- ``:of-type`` (identifier type and value): tokens of ``s.<code>:of-type`` whose system is
  ``"typesystem|typecode"`` (its ``|`` escaped like any other) and code the identifier value,
  stored only in the ``system|code`` and ``system|`` forms (``:of-type`` always names the system).

Many alternatives of one reference clause (a resolved chain lists up to thousands of targets)
are one ``$in``, never an ``$or``.

Sorting (``_sort``) by a date, string, number or quantity parameter uses ``k`` (see
``sort_doc``), written with the document: per parameter ``{e: 1, lo, hi}``, the lowest and
highest value of ``values.sort_keys`` (scalars, not arrays, so one index can hold several ``k``
fields and serve a sort, e.g. ``_sort=-date``). Tokens, references and uris (many per resource,
rarely sorted by) have the same ``{e, lo, hi}`` computed from ``s.<code>`` in an aggregation
(``_k``), as SQLite looks them up in its index tables. Missing values sort last in both
directions, as on SQLite: descending by ``hi`` does that by itself (MongoDB sorts a missing
field as null, below every value), ascending sorts by the presence flag ``e`` descending first,
then ``lo``. The id breaks ties in the direction of the last key; the keyset cursor is the list
of sort key values, nulls included (``keyset_after`` knows where nulls sort). A previous page
reads the same keys with every direction flipped (the ``e`` flag's too, so missing values come
first), after its cursor, and reverses the documents: an index serving the order serves it too,
walked backward.

Deleted documents carry no ``s``: any positive ``s`` condition excludes them by itself, so
``d: false`` is added only to filters without one (``_id``, ``_lastUpdated``, ``:not``,
``:missing=true``, no clauses); the ``(lu, _id)`` index is partial on ``d: false``, so it
serves exactly those filters and holds no deleted documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from bson.decimal128 import Decimal128, create_decimal128_context

from fhir_server.errors import invalid
from fhir_server.search import params as search_params
from fhir_server.search import ucum
from fhir_server.search.normalize import fold
from fhir_server.search.plan import Clause, Query, Value
from fhir_server.search.values import IndexValues, sort_keys

SORT_FIELDS = {"_id": "_id", "_lastUpdated": "lu"}
# Parameter types whose sort keys are stored in ``k`` at write time (the others are computed).
SORT_KEY_KINDS = frozenset({"date", "string", "number", "quantity"})
_D128 = create_decimal128_context()


# --- the ``s`` sub-document ---------------------------------------------------------------------


def index_doc(ix: IndexValues) -> dict[str, list]:
    s: dict[str, list] = {}
    for p, system, code, text in ix.tokens:
        if p.endswith(":of-type"):  # always queried with its "typesystem|typecode" system
            if system is not None:
                sys = _esc(system)
                s.setdefault(p, []).extend([f"{sys}|{_esc(code)}", f"{sys}|"] if code is not None else [f"{sys}|"])
            continue
        s.setdefault(p, []).extend(_token_keys(system, code))
        if text:
            s.setdefault(f"{p}:text", []).append(text)
    for p, folded, exact in ix.strings:
        s.setdefault(p, []).append(folded)
        s.setdefault(f"{p}:exact", []).append(exact)
    for p, lo, hi in ix.dates:
        s.setdefault(p, []).append({"lo": lo, "hi": hi})
    for p, target in ix.references:
        s.setdefault(p, []).append(target)
    for p, value in ix.numbers:
        s.setdefault(p, []).append(decimal128(value))
    for p, value, system, code, cvalue, ccode in ix.quantities:
        q = {"v": decimal128(value), "cv": decimal128(cvalue)}
        for k, v in (("s", system), ("c", code), ("cc", ccode)):
            if v is not None:
                q[k] = v
        s.setdefault(p, []).append(q)
    for p, value in ix.uris:
        s.setdefault(p, []).append(value)
    for key, values in s.items():
        if len(values) > 1 and isinstance(values[0], str):
            s[key] = list(dict.fromkeys(values))
    return s


def sort_doc(ix: IndexValues) -> dict[str, dict]:
    """The ``k`` sub-document: per parameter the presence flag and the (lowest, highest) sort key."""
    return {p: {"e": 1, "lo": lo, "hi": hi} for p, (lo, hi) in sort_keys(ix, SORT_KEY_KINDS).items()}


def reference_targets(ix: IndexValues | None) -> list[str]:
    """Every reference target of a resource (the ``refs`` collection's ``x``)."""
    if ix is None:
        return []
    return sorted({target for _, target in ix.references})


def decimal128(value: Decimal) -> Decimal128:
    return Decimal128(_D128.create_decimal(value))


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|")


def _token_keys(system: str | None, code: str | None) -> list[str]:
    keys = []
    if code is not None:
        c = _esc(code)
        keys += [c, f"{_esc(system)}|{c}" if system is not None else f"|{c}"]
    if system is not None:
        keys.append(f"{_esc(system)}|")
    return keys


def _token_key(v: Value) -> str:
    if v.system is None:
        return _esc(v.text)
    if v.system == "":
        return f"|{_esc(v.text)}"
    if v.text == "":
        return f"{_esc(v.system)}|"
    return f"{_esc(v.system)}|{_esc(v.text)}"


# --- query compilation ---------------------------------------------------------------------------


def compile_filter(query: Query) -> dict:
    parts, positive = [], False
    for clause in query.clauses:
        f, pos = _clause(clause)
        parts.append(f)
        positive = positive or pos
    if not positive:
        parts.insert(0, {"d": False})
    return and_(parts)


def _sort_kind(type: str, param: str) -> str:
    p = search_params.param(type, param)
    return p.type if p is not None else "string"


def sort_fields(query: Query) -> list[tuple[str, bool]]:
    """The (field, descending) keys of ``query``'s order, ending with the id (a total order):
    ``k.<code>`` for kinds stored at write time, ``_k.<code>`` for those computed while sorting."""
    keys: list[tuple[str, bool]] = []
    for param, desc in query.sort:
        if param in SORT_FIELDS:
            keys.append((SORT_FIELDS[param], desc))
            continue
        base = "k" if _sort_kind(query.type, param) in SORT_KEY_KINDS else "_k"
        if desc:
            keys.append((f"{base}.{param}.hi", True))  # missing: null, sorts last descending
        else:
            keys += [(f"{base}.{param}.e", True), (f"{base}.{param}.lo", False)]  # present ones first
    if not keys or keys[-1][0] != "_id":
        keys.append(("_id", keys[-1][1] if keys else False))  # the id breaks ties: the order is total
    seen: set[str] = set()
    return [(f, d) for f, d in keys if not (f in seen or seen.add(f))]


def sort_index(type: str, param: str, desc: bool) -> list[tuple[str, int]]:
    """The index keys that serve ``_sort=param`` (``desc``: ``-param``) with no SORT stage."""
    return [(f, -1 if d else 1) for f, d in sort_fields(Query(type, sort=((param, desc),)))]


# A token's code keys in ``s`` are those without an unescaped "|" (see ``_token_keys``).
_CODE_KEY = r"^(?:[^|\\]|\\.)*$"


def _unescape(expr) -> dict:
    """Undo ``_esc`` in an aggregation expression (``\\`` first, through a placeholder)."""
    for find, repl in (("\\\\", "\uffff"), ("\\|", "|"), ("\uffff", "\\")):
        expr = {"$replaceAll": {"input": expr, "find": find, "replacement": repl}}
    return expr


def _computed_key(type: str, param: str) -> dict:
    """``{e, lo, hi}`` of a token, reference or uri parameter, computed from ``s.<code>`` as
    ``values.sort_keys`` would give them: lowest and highest code / target / uri."""
    values = f"$s.{param}"
    if _sort_kind(type, param) == "token":
        codes = {"$filter": {"input": values, "cond": {"$regexMatch": {"input": "$$this", "regex": _CODE_KEY}}}}
        values = {"$map": {"input": codes, "in": _unescape("$$this")}}
    lo = {"$min": values}
    return {"e": {"$cond": [{"$eq": [{"$ifNull": [lo, None]}, None]}, None, 1]}, "lo": lo, "hi": {"$max": values}}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search: a ``find`` (``filter``, ``sort``, ``projection``), or, when a sort
    key is computed (``computed``), an aggregation (``pipeline``). ``key(doc)`` is the keyset
    cursor of a result document."""

    match: dict  # the query's filter
    after: dict | None  # the keyset condition (on computed keys: applied once they are computed)
    sort: list[tuple[str, int]]
    projection: dict
    computed: dict
    key: Callable[[dict], list]

    @property
    def filter(self) -> dict:
        return self.match if self.after is None else and_([self.match, self.after])

    def pipeline(self, limit: int) -> list[dict]:
        return [{"$match": self.match}, {"$addFields": {"_k": self.computed}},
                *([{"$match": self.after}] if self.after is not None else []),
                {"$sort": dict(self.sort)}, {"$limit": limit}, {"$project": self.projection}]  # fmt: skip


def compile_page(query: Query, after: list | None, *, backward: bool = False, inclusive: bool = False) -> Page:
    """One page after the key ``after`` (None: the first page). ``backward``: the documents
    before it, nearest first (every key's direction flipped, the id's too; the caller reverses
    them); ``inclusive``: ``after``'s own document too."""
    keys = sort_fields(query)
    if backward:
        keys = [(f, not d) for f, d in keys]
    cond = None
    if after is not None:
        if len(after) != len(keys):
            raise invalid("The paging cursor does not fit this search; start the search again", "_cursor")
        cond = keyset_after(keys, after, inclusive)
    params = dict.fromkeys(p for p, _ in query.sort if p not in SORT_FIELDS)
    stored = [p for p in params if _sort_kind(query.type, p) in SORT_KEY_KINDS]
    computed = {p: _computed_key(query.type, p) for p in params if p not in stored}
    projection = {"v": 1, "lu": 1, "r": 1, **{f"k.{p}": 1 for p in stored}, **({"_k": 1} if computed else {})}
    sort = [(f, -1 if desc else 1) for f, desc in keys]
    return Page(compile_filter(query), cond, sort, projection, computed, lambda doc: [_get(doc, f) for f, _ in keys])


def _get(doc: dict, path: str):
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def keyset_after(keys: list[tuple[str, bool]], after: list, inclusive: bool = False) -> dict:
    """The documents after ``after`` in (k1, k2, ...) order, where a key may be null (missing):
    MongoDB sorts null below every value, and a comparison never matches null, so a null is
    spelled out: ascending after null is "not null", descending after a value includes null,
    and nothing is descending after null. ``inclusive``: the document at ``after`` too (on the
    last key, which is unique: the id)."""
    ors = []
    for i, (field, desc) in enumerate(keys):
        cond = {f: after[j] for j, (f, _) in enumerate(keys[:i])}
        a = after[i]
        at = inclusive and i == len(keys) - 1
        if a is None:
            if desc and not at:
                continue  # null is last descending
            if desc:
                cond = and_([cond, {field: None}])
            elif not at:  # ascending, at or after null: anything
                cond = and_([cond, {field: {"$ne": None}}])
        elif desc:
            cond = and_([cond, {"$or": [{field: {"$lte" if at else "$lt": a}}, {field: None}]}])
        else:
            cond = and_([cond, {field: {"$gte" if at else "$gt": a}}])
        ors.append(cond)
    if not ors:
        return {"_id": {"$in": []}}  # nothing comes after
    return ors[0] if len(ors) == 1 else {"$or": ors}


def and_(parts: list[dict]) -> dict:
    """One filter document; clauses whose fields collide go under ``$and``."""
    out: dict = {}
    rest: list[dict] = []
    for p in parts:
        if any(k in out for k in p):
            rest.append(p)
        else:
            out.update(p)
    if rest:
        out["$and"] = [*out.get("$and", []), *rest]
    return out


def _or(conds: list[dict]) -> dict:
    """Any of ``conds``; equalities on one field become one ``$in``."""
    if len(conds) == 1:
        return conds[0]
    fields = {k for c in conds for k in c}
    field = next(iter(fields))
    if len(fields) == 1 and not field.startswith("$") and all(isinstance(c[field], str) for c in conds):
        return {field: {"$in": list(dict.fromkeys(c[field] for c in conds))}}
    return {"$or": conds}


def _clause(c: Clause) -> tuple[dict, bool]:
    """(filter, positive): positive filters match only documents holding an index value."""
    if c.param == "_id":
        ids = list(dict.fromkeys(v.text for v in c.values))
        return {"_id": {"$nin" if c.modifier == "not" else "$in": ids}}, False
    if c.param == "_lastUpdated":
        return _or([_point_date("lu", v) for v in c.values]), False
    key = f"{c.param}:{c.modifier}" if c.modifier in ("identifier", "of-type") else c.param
    field = f"s.{key}"
    if c.modifier == "missing":
        missing = c.values[0].text.lower() == "true"
        return {field: {"$exists": not missing}}, not missing
    if c.type == "reference" and c.modifier != "identifier" and len(c.values) > 1:
        # many targets (a resolved chain, an include): one $in, not thousands of alternatives
        f = {field: {"$in": list(dict.fromkeys(v.text for v in c.values))}}
    else:
        f = _or([_value(c, v, field) for v in c.values])
    if c.modifier == "not":
        return {"$nor": [f]}, False
    return f, True


def _value(c: Clause, v: Value, field: str) -> dict:
    t = "token" if c.modifier == "identifier" else c.type
    if t == "token":
        if c.modifier == "text":
            return {f"{field}:text": {"$regex": "^" + re.escape(fold(v.text))}}
        return {field: _token_key(v)}
    if t == "string":
        if c.modifier == "exact":
            return {f"{field}:exact": v.text}
        if c.modifier == "contains":
            return {field: {"$regex": re.escape(fold(v.text))}}
        return {field: {"$regex": "^" + re.escape(fold(v.text))}}
    if t == "date":
        return _date(field, v)
    if t == "reference":
        return {field: v.text}
    if t == "uri":
        if c.modifier == "below":
            return {field: {"$regex": "^" + re.escape(v.text)}}
        if c.modifier == "above":
            return {field: {"$in": [v.text[:i] for i in range(1, len(v.text) + 1)]}}
        return {field: v.text}
    if t == "number":
        return _range(field, _number_terms(v.prefix, v.number))
    if t == "quantity":
        return _quantity(v, field)
    raise invalid(f"Search parameter type {c.type} is not supported", c.param)


def _date(field: str, v: Value) -> dict:
    """``v`` against an array of stored ``{lo, hi}`` ranges (FHIR R4 3.1.1.4.1.3): the document
    matches when one range does. A condition on both ends of one range is an ``$elemMatch``;
    ``ge``/``le`` ("the range above/below the value overlaps the target's, or the value's range
    contains it") reduce to an "or" of one-end conditions, each served by an index."""
    lo, hi = f"{field}.lo", f"{field}.hi"
    within = {field: {"$elemMatch": {"lo": {"$gte": v.lo}, "hi": {"$lte": v.hi}}}}
    p = v.prefix
    if p == "eq":
        return within
    if p == "ne":
        return {"$or": [{lo: {"$lt": v.lo}}, {hi: {"$gt": v.hi}}]}
    if p == "gt":
        return {hi: {"$gt": v.hi}}
    if p == "lt":
        return {lo: {"$lt": v.lo}}
    # ge: hi > v.hi, or v.lo <= lo and hi <= v.hi; as lo <= hi, that is hi > v.hi or lo >= v.lo
    if p == "ge":
        return {"$or": [{hi: {"$gt": v.hi}}, {lo: {"$gte": v.lo}}]}
    if p == "le":  # lo < v.lo, or v.lo <= lo and hi <= v.hi: lo < v.lo or hi <= v.hi
        return {"$or": [{lo: {"$lt": v.lo}}, {hi: {"$lte": v.hi}}]}
    if p == "sa":
        return {lo: {"$gt": v.hi}}
    if p == "eb":
        return {hi: {"$lt": v.lo}}
    return {field: {"$elemMatch": {"lo": {"$lte": v.hi}, "hi": {"$gte": v.lo}}}}  # ap: overlaps


def _point_date(field: str, v: Value) -> dict:
    """``v`` against a stored instant (``_lastUpdated``): a range whose ends are one point."""
    p = v.prefix
    if p == "ne":
        return {"$or": [{field: {"$lt": v.lo}}, {field: {"$gt": v.hi}}]}
    return {field: {
        "eq": {"$gte": v.lo, "$lte": v.hi}, "gt": {"$gt": v.hi}, "lt": {"$lt": v.lo}, "ge": {"$gte": v.lo},
        "le": {"$lte": v.hi}, "sa": {"$gt": v.hi}, "eb": {"$lt": v.lo},
    }.get(p, {"$lte": v.hi, "$gte": v.lo})}  # ap: overlaps  # fmt: skip


# A condition on one stored number: ("all" | "any", [(end, operator, value), ...]).
Terms = tuple[str, list[tuple[str, str, object]]]


def _number_terms(prefix: str, n: Decimal, convert=None) -> Terms:
    """FHIR number comparison: ``eq`` / ``ne`` use the implicit range of ``n``'s precision."""
    exp = n.as_tuple().exponent
    half = Decimal(1).scaleb(exp) / 2 if isinstance(exp, int) else Decimal(0)
    lo, hi, x = n - half, n + half, n
    ap_lo, ap_hi = x - abs(x) * Decimal("0.1"), x + abs(x) * Decimal("0.1")
    if convert is not None:
        lo, hi, x, ap_lo, ap_hi = (convert(d) for d in (lo, hi, x, ap_lo, ap_hi))
    lo, hi, x, ap_lo, ap_hi = (decimal128(d) for d in (lo, hi, x, ap_lo, ap_hi))
    return {
        "eq": ("all", [("", "$gte", lo), ("", "$lt", hi)]),
        "ne": ("any", [("", "$lt", lo), ("", "$gte", hi)]),
        "gt": ("all", [("", "$gt", x)]),
        "lt": ("all", [("", "$lt", x)]),
        "ge": ("all", [("", "$gte", x)]),
        "le": ("all", [("", "$lte", x)]),
        "sa": ("all", [("", "$gt", x)]),
        "eb": ("all", [("", "$lt", x)]),
        "ap": ("all", [("", "$gte", ap_lo), ("", "$lte", ap_hi)]),
    }[prefix]


def _range(field: str, terms: Terms) -> dict:
    """``terms`` on ``field``, an array of numbers: two conditions on one element need
    ``$elemMatch``; an "any" distributes into ``$or``."""
    mode, items = terms
    if mode == "any":
        return {"$or": [{field: {op: val}} for _, op, val in items]}
    if len(items) == 1:
        _, op, val = items[0]
        return {field: {op: val}}
    return {field: {"$elemMatch": {op: val for _, op, val in items}}}


def _quantity(v: Value, field: str) -> dict:
    """Value and unit as given (``c``), or UCUM-canonical value and unit (``cv``, ``cc``)."""
    alternatives = [("v", _number_terms(v.prefix, v.number), {"c": v.unit} if v.unit else {})]
    if v.unit and v.system in (None, ucum.UCUM):
        canonical = ucum.canonical(v.number, v.unit)
        if canonical is not None:
            cunit = canonical[1]

            def convert(d: Decimal) -> Decimal:
                return ucum.canonical(d, v.unit)[0]

            alternatives.append(("cv", _number_terms(v.prefix, v.number, convert), {"cc": cunit}))
    ors = []
    for value_field, (mode, items), extra in alternatives:
        if v.system:
            extra = {**extra, "s": v.system}
        groups = [[item] for item in items] if mode == "any" else [items]
        for group in groups:
            ors.append({field: {"$elemMatch": {value_field: {op: val for _, op, val in group}, **extra}}})
    return ors[0] if len(ors) == 1 else {"$or": ors}
