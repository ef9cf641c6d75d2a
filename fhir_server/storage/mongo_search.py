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
  stored only in the ``system|code`` and ``system|`` forms (``:of-type`` always names the system);
- composite ``s.<code>``: one sub-document per element, ``{c0: [...], c1: [...]}``, each
  component's values in the form of its type, matched with one ``$elemMatch`` per alternative
  (``mongo_composite``).

The stored forms and the filter of one value are in ``mongo_values``. Many alternatives of one
reference clause (a resolved chain lists up to thousands of targets) are one ``$in``, never an
``$or``.

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

from dataclasses import dataclass
from typing import Callable

from fhir_server.errors import invalid
from fhir_server.search import params as search_params
from fhir_server.search.plan import Clause, Query
from fhir_server.search.values import IndexValues, sort_keys
from fhir_server.storage import mongo_composite
from fhir_server.storage.mongo_values import (and_, decimal128, esc, or_, point_date_filter, quantity_doc, token_keys,
                                              value_filter)

SORT_FIELDS = {"_id": "_id", "_lastUpdated": "lu"}
# Parameter types whose sort keys are stored in ``k`` at write time (the others are computed).
SORT_KEY_KINDS = frozenset({"date", "string", "number", "quantity"})


# --- the ``s`` sub-document ---------------------------------------------------------------------


def index_doc(ix: IndexValues) -> dict[str, list]:
    s: dict[str, list] = {}
    for p, system, code, text in ix.tokens:
        if p.endswith(":of-type"):  # always queried with its "typesystem|typecode" system
            if system is not None:
                sys = esc(system)
                s.setdefault(p, []).extend([f"{sys}|{esc(code)}", f"{sys}|"] if code is not None else [f"{sys}|"])
            continue
        s.setdefault(p, []).extend(token_keys(system, code))
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
        s.setdefault(p, []).append(quantity_doc(value, system, code, cvalue, ccode))
    for p, value in ix.uris:
        s.setdefault(p, []).append(value)
    s.update(mongo_composite.index_entries(ix.composites))
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



# --- query compilation ---------------------------------------------------------------------------


def compile_filter(query: Query) -> dict:
    parts, positive = [], False
    for clause in query.clauses:
        f, pos = _clause(query.type, clause)
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


# A token's code keys in ``s`` are those without an unescaped "|" (see ``mongo_values.token_keys``).
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


def _clause(type: str, c: Clause) -> tuple[dict, bool]:
    """(filter, positive): positive filters match only documents holding an index value."""
    if c.param == "_id":
        ids = list(dict.fromkeys(v.text for v in c.values))
        return {"_id": {"$nin" if c.modifier == "not" else "$in": ids}}, False
    if c.param == "_lastUpdated":
        return or_([point_date_filter("lu", v) for v in c.values]), False
    if c.type == "composite":  # no modifiers
        return mongo_composite.condition(type, c), True
    key = f"{c.param}:{c.modifier}" if c.modifier in ("identifier", "of-type") else c.param
    field = f"s.{key}"
    if c.modifier == "missing":
        missing = c.values[0].text.lower() == "true"
        return {field: {"$exists": not missing}}, not missing
    if c.type == "reference" and c.modifier != "identifier" and len(c.values) > 1:
        # many targets (a resolved chain, an include): one $in, not thousands of alternatives
        f = {field: {"$in": list(dict.fromkeys(v.text for v in c.values))}}
    else:
        f = or_([value_filter(c, v, field) for v in c.values])
    if c.modifier == "not":
        return {"$nor": [f]}, False
    return f, True

