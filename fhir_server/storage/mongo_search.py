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
- reference and uri ``s.<code>``: the target / uri string (``:below``: anchored regex,
  ``:above``: ``$in`` of the query's prefixes);
- number ``s.<code>``: Decimal128, quantity ``s.<code>``: ``{v, s, c, cv, cc}`` with Decimal128
  values. Decimal128, not float: FHIR's implicit precision range (``eq5.40`` is [5.395, 5.405))
  is exact in decimal and the stored value is the resource's exact decimal;
- parameter presence (``:missing``): the ``s.<code>`` field exists (an empty array when a
  token has only text).

Deleted documents carry no ``s``: any positive ``s`` condition excludes them by itself, so
``d: false`` is added only to filters without one (``_id``, ``_lastUpdated``, ``:not``,
``:missing=true``, no clauses); the ``(lu, _id)`` index is partial on ``d: false``, so it
serves exactly those filters and holds no deleted documents.
"""

from __future__ import annotations

import re
from decimal import Decimal

from bson.decimal128 import Decimal128, create_decimal128_context

from fhir_server.errors import invalid
from fhir_server.search import ucum
from fhir_server.search.normalize import fold
from fhir_server.search.plan import Clause, Query, Value
from fhir_server.search.values import IndexValues

SORT_FIELDS = {"_id": "_id", "_lastUpdated": "lu"}
_D128 = create_decimal128_context()


# --- the ``s`` sub-document ---------------------------------------------------------------------


def index_doc(ix: IndexValues) -> dict[str, list]:
    s: dict[str, list] = {}
    for p, system, code, text in ix.tokens:
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


def compile_page(query: Query, after: list | None):
    """(filter, sort, key): ``key(doc)`` is the keyset cursor of a result document."""
    filt = compile_filter(query)
    unsupported = [p for p, _ in query.sort if p not in SORT_FIELDS]
    if unsupported:
        raise invalid(f"Sorting by {', '.join(unsupported)} is not supported yet", "_sort")
    keys = [(SORT_FIELDS[p], desc) for p, desc in query.sort]
    if not keys or keys[-1][0] != "_id":
        keys.append(("_id", False))  # the id breaks ties, so the keyset order is total
    if after is not None:
        if len(after) != len(keys):
            raise invalid("The paging cursor does not fit this search; start the search again", "_cursor")
        filt = and_([filt, keyset_after(keys, after)])
    sort = [(f, -1 if desc else 1) for f, desc in keys]
    return filt, sort, lambda doc: [doc[f] for f, _ in keys]


def keyset_after(keys: list[tuple[str, bool]], after: list) -> dict:
    """The documents after ``after`` in (k1, k2, ...) order."""
    ors = []
    for i, (field, desc) in enumerate(keys):
        cond = {f: after[j] for j, (f, _) in enumerate(keys[:i])}
        cond[field] = {"$lt" if desc else "$gt": after[i]}
        ors.append(cond)
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
        return _or([_range("lu", _date_terms(v), scalar=True) for v in c.values]), False
    key = f"{c.param}:identifier" if c.modifier == "identifier" else c.param
    field = f"s.{key}"
    if c.modifier == "missing":
        missing = c.values[0].text.lower() == "true"
        return {field: {"$exists": not missing}}, not missing
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
        return _range(field, _date_terms(v))
    if t == "reference":
        return {field: _ref_target(c, v)}
    if t == "uri":
        if c.modifier == "below":
            return {field: {"$regex": "^" + re.escape(v.text)}}
        if c.modifier == "above":
            return {field: {"$in": [v.text[:i] for i in range(1, len(v.text) + 1)]}}
        return {field: v.text}
    if t == "number":
        return _range(field, _number_terms(v.prefix, v.number), values=True)
    if t == "quantity":
        return _quantity(v, field)
    raise invalid(f"Search parameter type {c.type} is not supported", c.param)


def _ref_target(c: Clause, v: Value) -> str:
    text = v.text
    if c.modifier and c.modifier not in ("identifier", "missing", "not") and "/" not in text:
        return f"{c.modifier}/{text}"  # :[type]
    return text


# A condition on one stored range or number: ("all" | "any", [(end, operator, value), ...]).
Terms = tuple[str, list[tuple[str, str, object]]]


def _date_terms(v: Value) -> Terms:
    return {
        "eq": ("all", [("lo", "$gte", v.lo), ("hi", "$lte", v.hi)]),
        "ne": ("any", [("lo", "$lt", v.lo), ("hi", "$gt", v.hi)]),
        "gt": ("all", [("hi", "$gt", v.hi)]),
        "lt": ("all", [("lo", "$lt", v.lo)]),
        "ge": ("all", [("hi", "$gte", v.lo)]),
        "le": ("all", [("lo", "$lte", v.hi)]),
        "sa": ("all", [("lo", "$gt", v.hi)]),
        "eb": ("all", [("hi", "$lt", v.lo)]),
    }.get(v.prefix, ("all", [("lo", "$lte", v.hi), ("hi", "$gte", v.lo)]))  # ap: overlaps


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


def _range(field: str, terms: Terms, *, scalar: bool = False, values: bool = False) -> dict:
    """``terms`` on ``field``: a scalar, an array of ``{lo, hi}`` or (``values``) an array of numbers.

    Two conditions on one array element need ``$elemMatch``; an "any" distributes into ``$or``.
    """
    mode, items = terms

    def path(end: str) -> str:
        return field if scalar or values else f"{field}.{end}"

    if mode == "any":
        return {"$or": [{path(end): {op: val}} for end, op, val in items]}
    if len(items) == 1:
        end, op, val = items[0]
        return {path(end): {op: val}}
    if scalar:
        return {field: {op: val for _, op, val in items}}
    if values:
        return {field: {"$elemMatch": {op: val for _, op, val in items}}}
    match: dict = {}
    for end, op, val in items:
        match.setdefault(end, {})[op] = val
    return {field: {"$elemMatch": match}}


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
