"""SQL conditions on one stored index value, per parameter type (FHIR R4 search matching).

Each function gives ``(sql, args)`` over the columns of an index table row (``system``, ``code``,
``value``, ``lo``, ``hi``, ``target``, ``cvalue``, ``ccode``, as ``sqlite_search.INDEX_SCHEMA``
names them); ``sqlite_search`` and ``sqlite_composite`` wrap them in subqueries.
"""

from __future__ import annotations

from decimal import Decimal

from fhir_server.errors import invalid
from fhir_server.search import ucum
from fhir_server.search.normalize import fold
from fhir_server.search.plan import Clause, Value

UCUM = "http://unitsofmeasure.org"


def value_cond(c: Clause, v: Value) -> tuple[str, list]:
    t = "token" if c.modifier == "identifier" else c.type
    if t == "token":
        if c.modifier == "text":
            return "text >= ? AND text < ?", prefix_range(fold(v.text))
        if v.system is None:
            return "code=?", [v.text]
        if v.system == "":
            return "system IS NULL AND code=?", [v.text]
        if v.text == "":
            return "system=?", [v.system]
        return "system=? AND code=?", [v.system, v.text]
    if t == "string":
        folded = fold(v.text)
        if c.modifier == "exact":
            return "exact=?", [v.text]
        if c.modifier == "contains":
            return "value LIKE ? ESCAPE '\\'", ["%" + like(folded) + "%"]
        return "value >= ? AND value < ?", prefix_range(folded)
    if t == "date":
        return date_cond(v, "lo", "hi")
    if t == "reference":
        return "target=?", [ref_target(c, v)]
    if t == "uri":
        if c.modifier == "below":  # URIs compare case-sensitively: no LIKE
            return "substr(value, 1, length(?)) = ?", [v.text, v.text]
        if c.modifier == "above":
            return "value = substr(?, 1, length(value))", [v.text]
        return "value=?", [v.text]
    if t == "number":
        return number_cond(v, "value")
    if t == "quantity":
        return quantity_cond(v)
    raise invalid(f"Search parameter type {c.type} is not supported", c.param)


def ref_target(c: Clause, v: Value) -> str:
    return v.text  # the plan already made bare ids Type/id


def date_cond(v: Value, lo: str, hi: str) -> tuple[str, list]:
    p = v.prefix
    if p == "eq":
        return f"({lo} >= ? AND {hi} <= ?)", [v.lo, v.hi]
    if p == "ne":
        return f"NOT ({lo} >= ? AND {hi} <= ?)", [v.lo, v.hi]
    if p == "gt":
        return f"{hi} > ?", [v.hi]
    if p == "lt":
        return f"{lo} < ?", [v.lo]
    # ge/le: the range above/below the search value overlaps the target's, or the search
    # value's range contains it (FHIR R4 3.1.1.4.1.3). For a point (lo and hi one column, as
    # _lastUpdated) that is simply >= lo / <= hi, which an index on the column serves.
    if p in ("ge", "le") and lo == hi:
        return (f"{lo} >= ?", [v.lo]) if p == "ge" else (f"{lo} <= ?", [v.hi])
    if p == "ge":
        return f"({hi} > ? OR ({lo} >= ? AND {hi} <= ?))", [v.hi, v.lo, v.hi]
    if p == "le":
        return f"({lo} < ? OR ({lo} >= ? AND {hi} <= ?))", [v.lo, v.lo, v.hi]
    if p == "sa":
        return f"{lo} > ?", [v.hi]
    if p == "eb":
        return f"{hi} < ?", [v.lo]
    return f"({lo} <= ? AND {hi} >= ?)", [v.hi, v.lo]  # ap: overlaps


def number_cond(v: Value, col: str, convert=None) -> tuple[str, list]:
    """A number condition; ``eq 100`` covers [99.5, 100.5) by the value's significant figures.
    ``convert`` maps a bound to the column's units (UCUM-canonical): the range is computed in
    the units the search gave, so ``5 kg`` keeps its precision as [4500, 5500) g."""
    n = v.number
    half = Decimal(1).scaleb(n.as_tuple().exponent) / 2 if isinstance(n.as_tuple().exponent, int) else Decimal(0)
    conv = convert or (lambda d: d)
    lo, hi, x = float(conv(n - half)), float(conv(n + half)), float(conv(n))
    spread = abs(float(conv(n + abs(n) / 10)) - x)  # ap: within 10% of the value
    ops = {"eq": (f"{col} >= ? AND {col} < ?", [lo, hi]), "ne": (f"NOT ({col} >= ? AND {col} < ?)", [lo, hi]),
           "gt": (f"{col} > ?", [x]), "lt": (f"{col} < ?", [x]), "ge": (f"{col} >= ?", [x]),
           "le": (f"{col} <= ?", [x]), "sa": (f"{col} > ?", [x]), "eb": (f"{col} < ?", [x]),
           "ap": (f"{col} >= ? AND {col} <= ?", [x - spread, x + spread])}
    return ops[v.prefix]


def quantity_cond(v: Value) -> tuple[str, list]:
    """A quantity matches in the unit it was given in, or in UCUM-canonical form (5 mg = 0.005 g)."""
    sql, args = number_cond(v, "value")
    if not v.unit:
        if v.system:
            return f"{sql} AND system=?", [*args, v.system]
        return sql, args
    system = " AND system=?" if v.system else ""
    given = f"({sql} AND code=?{system})"
    args = [*args, v.unit, *([v.system] if v.system else [])]
    canon = ucum.canonical(v.number, v.unit) if v.system in (None, UCUM) else None
    if canon is None:
        return given, args
    csql, cargs = number_cond(v, "cvalue", convert=lambda d: ucum.canonical(d, v.unit)[0])
    return f"({given} OR ({csql} AND ccode=?))", [*args, *cargs, canon[1]]


def prefix_range(s: str) -> list[str]:
    return [s, s + "\U0010ffff"]


def like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
