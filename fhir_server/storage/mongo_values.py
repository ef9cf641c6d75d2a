"""MongoDB index value forms in ``s`` and the filter of one search value on them.

The stored forms (``mongo_search`` describes the ``s`` sub-document): token keys ``code``,
``system|code``, ``|code``, ``system|`` with ``|`` and ``\\`` escaped (``token_keys``), dates
``{lo, hi}``, numbers Decimal128, quantities ``{v, s, c, cv, cc}`` (``quantity_doc``). The
filters take the field the values are in, so they serve a parameter's ``s.<code>`` as well as a
composite component's ``c<n>`` inside an ``$elemMatch`` (``mongo_composite``).
"""

from __future__ import annotations

import re
from decimal import Decimal

from bson.decimal128 import Decimal128, create_decimal128_context

from fhir_server.errors import invalid
from fhir_server.search import ucum
from fhir_server.search.normalize import fold
from fhir_server.search.plan import Clause, Value

_D128 = create_decimal128_context()


def decimal128(value: Decimal) -> Decimal128:
    return Decimal128(_D128.create_decimal(value))


def quantity_doc(value: Decimal, system: str | None, code: str | None, cvalue: Decimal, ccode: str | None) -> dict:
    """A stored quantity: ``{v, cv}`` Decimal128 and ``s``, ``c``, ``cc`` when given."""
    q = {"v": decimal128(value), "cv": decimal128(cvalue)}
    for k, v in (("s", system), ("c", code), ("cc", ccode)):
        if v is not None:
            q[k] = v
    return q


def esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|")


def token_keys(system: str | None, code: str | None) -> list[str]:
    keys = []
    if code is not None:
        c = esc(code)
        keys += [c, f"{esc(system)}|{c}" if system is not None else f"|{c}"]
    if system is not None:
        keys.append(f"{esc(system)}|")
    return keys


def token_key(v: Value) -> str:
    if v.system is None:
        return esc(v.text)
    if v.system == "":
        return f"|{esc(v.text)}"
    if v.text == "":
        return f"{esc(v.system)}|"
    return f"{esc(v.system)}|{esc(v.text)}"



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


def or_(conds: list[dict]) -> dict:
    """Any of ``conds``; equalities on one field become one ``$in``."""
    if len(conds) == 1:
        return conds[0]
    fields = {k for c in conds for k in c}
    field = next(iter(fields))
    if len(fields) == 1 and not field.startswith("$") and all(isinstance(c[field], str) for c in conds):
        return {field: {"$in": list(dict.fromkeys(c[field] for c in conds))}}
    return {"$or": conds}



def value_filter(c: Clause, v: Value, field: str) -> dict:
    t = "token" if c.modifier == "identifier" else c.type
    if t == "token":
        if c.modifier == "text":
            return {f"{field}:text": {"$regex": "^" + re.escape(fold(v.text))}}
        return {field: token_key(v)}
    if t == "string":
        if c.modifier == "exact":
            return {f"{field}:exact": v.text}
        if c.modifier == "contains":
            return {field: {"$regex": re.escape(fold(v.text))}}
        return {field: {"$regex": "^" + re.escape(fold(v.text))}}
    if t == "date":
        return date_filter(field, v)
    if t == "reference":
        return {field: v.text}
    if t == "uri":
        if c.modifier == "below":
            return {field: {"$regex": "^" + re.escape(v.text)}}
        if c.modifier == "above":
            return {field: {"$in": [v.text[:i] for i in range(1, len(v.text) + 1)]}}
        return {field: v.text}
    if t == "number":
        return range_filter(field, number_terms(v.prefix, v.number))
    if t == "quantity":
        return quantity_filter(v, field)
    raise invalid(f"Search parameter type {c.type} is not supported", c.param)


def date_filter(field: str, v: Value) -> dict:
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


def point_date_filter(field: str, v: Value) -> dict:
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


def number_terms(prefix: str, n: Decimal, convert=None) -> Terms:
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


def range_filter(field: str, terms: Terms) -> dict:
    """``terms`` on ``field``, an array of numbers: two conditions on one element need
    ``$elemMatch``; an "any" distributes into ``$or``."""
    mode, items = terms
    if mode == "any":
        return {"$or": [{field: {op: val}} for _, op, val in items]}
    if len(items) == 1:
        _, op, val = items[0]
        return {field: {op: val}}
    return {field: {"$elemMatch": {op: val for _, op, val in items}}}


def quantity_filter(v: Value, field: str) -> dict:
    """Value and unit as given (``c``), or UCUM-canonical value and unit (``cv``, ``cc``)."""
    alternatives = [("v", number_terms(v.prefix, v.number), {"c": v.unit} if v.unit else {})]
    if v.unit and v.system in (None, ucum.UCUM):
        canonical = ucum.canonical(v.number, v.unit)
        if canonical is not None:
            cunit = canonical[1]

            def convert(d: Decimal) -> Decimal:
                return ucum.canonical(d, v.unit)[0]

            alternatives.append(("cv", number_terms(v.prefix, v.number, convert), {"cc": cunit}))
    ors = []
    for value_field, (mode, items), extra in alternatives:
        if v.system:
            extra = {**extra, "s": v.system}
        groups = [[item] for item in items] if mode == "any" else [items]
        for group in groups:
            ors.append({field: {"$elemMatch": {value_field: {op: val for _, op, val in group}, **extra}}})
    return ors[0] if len(ors) == 1 else {"$or": ors}
