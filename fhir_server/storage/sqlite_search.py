"""SQLite index tables and the compilation of a search ``Query`` into SQL over them.

Every filter becomes ``r.id IN (SELECT id FROM idx_<kind> WHERE type=? AND param=? AND ...)``
so SQLite drives each clause from the (type, param, value) index of its table. The conditions on
one value are in ``sqlite_values``; composite clauses are compiled by ``sqlite_composite``.
"""

from __future__ import annotations

import sqlite3

from fhir_server.errors import invalid
from fhir_server.search import params as search_params
from fhir_server.search.composite import stored_as
from fhir_server.search.plan import Clause, Query, Referrers
from fhir_server.search.values import IndexValues
from fhir_server.storage import sqlite_composite
from fhir_server.storage.sqlite_values import date_cond, ref_target, value_cond

# Index version 2: every value index ends with the id and every (type, id, param) index carries
# the values, so a leading clause and each probe of the others are answered from the index alone
# (SQLite "COVERING INDEX"), never from the table rows. Stores of version < 2 are migrated at
# start (``sqlite.SQLiteStore``): the indexes below are dropped and built again.
INDEX_VERSION = 2
REBUILT_INDEXES = ("idx_token_code", "idx_token_res", "idx_string_value", "idx_string_res", "idx_date_lo",
                   "idx_date_hi", "idx_date_res", "idx_reference_target", "idx_reference_res", "idx_number_value",
                   "idx_number_res", "idx_quantity_value", "idx_quantity_res", "idx_uri_value", "idx_uri_res")
INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS idx_token (type TEXT, param TEXT, system TEXT, code TEXT, text TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (type, param, code, system, id);
CREATE INDEX IF NOT EXISTS idx_token_res ON idx_token (type, id, param, code, system);
CREATE TABLE IF NOT EXISTS idx_string (type TEXT, param TEXT, value TEXT, exact TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_string_value ON idx_string (type, param, value, id);
CREATE INDEX IF NOT EXISTS idx_string_res ON idx_string (type, id, param, value);
CREATE TABLE IF NOT EXISTS idx_date (type TEXT, param TEXT, lo TEXT, hi TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_date_lo ON idx_date (type, param, lo, hi, id);
CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (type, param, hi, lo, id);
CREATE INDEX IF NOT EXISTS idx_date_res ON idx_date (type, id, param, lo, hi);
CREATE TABLE IF NOT EXISTS idx_reference (type TEXT, param TEXT, target TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (type, param, target, id);
CREATE INDEX IF NOT EXISTS idx_reference_any ON idx_reference (target);
CREATE INDEX IF NOT EXISTS idx_reference_res ON idx_reference (type, id, param, target);
CREATE TABLE IF NOT EXISTS idx_number (type TEXT, param TEXT, value REAL, id TEXT);
CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (type, param, value, id);
CREATE INDEX IF NOT EXISTS idx_number_res ON idx_number (type, id, param, value);
CREATE TABLE IF NOT EXISTS idx_quantity (type TEXT, param TEXT, value REAL, system TEXT, code TEXT,
  cvalue REAL, ccode TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (type, param, ccode, cvalue, id);
CREATE INDEX IF NOT EXISTS idx_quantity_res ON idx_quantity (type, id, param, ccode, cvalue);
CREATE TABLE IF NOT EXISTS idx_uri (type TEXT, param TEXT, value TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (type, param, value, id);
CREATE INDEX IF NOT EXISTS idx_uri_res ON idx_uri (type, id, param, value);
""" + sqlite_composite.SCHEMA

# Sorting by a parameter looks its lowest (ascending) or highest (descending) value of each
# matching resource up in the parameter's index table: no sort keys are written per resource.
SORT_LOOKUP = {
    "token": ("idx_token", "code", "code"), "reference": ("idx_reference", "target", "target"),
    "uri": ("idx_uri", "value", "value"), "string": ("idx_string", "value", "value"),
    "date": ("idx_date", "lo", "hi"), "number": ("idx_number", "value", "value"),
    "quantity": ("idx_quantity", "cvalue", "cvalue"),
}
TABLES = ("idx_token", "idx_string", "idx_date", "idx_reference", "idx_number", "idx_quantity", "idx_uri",
          "idx_composite")
TABLE_BY_TYPE = {
    "token": "idx_token", "string": "idx_string", "date": "idx_date", "reference": "idx_reference",
    "number": "idx_number", "quantity": "idx_quantity", "uri": "idx_uri",
}


def insert_index(conn: sqlite3.Connection, type: str, id: str, ix: IndexValues) -> None:
    if ix.tokens:
        conn.executemany("INSERT INTO idx_token VALUES (?,?,?,?,?,?)", [(type, p, s, c, t, id) for p, s, c, t in ix.tokens])
    if ix.strings:
        conn.executemany("INSERT INTO idx_string VALUES (?,?,?,?,?)", [(type, p, f, e, id) for p, f, e in ix.strings])
    if ix.dates:
        conn.executemany("INSERT INTO idx_date VALUES (?,?,?,?,?)", [(type, p, lo, hi, id) for p, lo, hi in ix.dates])
    if ix.references:
        conn.executemany("INSERT INTO idx_reference VALUES (?,?,?,?)", [(type, p, t, id) for p, t in ix.references])
    if ix.numbers:
        conn.executemany("INSERT INTO idx_number VALUES (?,?,?,?)", [(type, p, float(v), id) for p, v in ix.numbers])
    if ix.quantities:
        conn.executemany(
            "INSERT INTO idx_quantity VALUES (?,?,?,?,?,?,?,?)",
            [(type, p, float(v), s, c, float(cv), cc, id) for p, v, s, c, cv, cc in ix.quantities],
        )
    if ix.uris:
        conn.executemany("INSERT INTO idx_uri VALUES (?,?,?,?)", [(type, p, v, id) for p, v in ix.uris])
    if ix.composites:
        sqlite_composite.insert(conn, type, id, ix.composites)


def delete_index(conn: sqlite3.Connection, type: str, id: str) -> None:
    for table in TABLES:
        conn.execute(f"DELETE FROM {table} WHERE type=? AND id=?", (type, id))


# --- query compilation --------------------------------------------------------------------------

SORT_COLUMNS = {"_id": "r.id", "_lastUpdated": "r.last_updated"}


# How likely a clause is to select few resources, lowest first: the clause that leads the plan
# (``r.id IN (subquery)``, driving primary-key lookups) is the most selective; every other
# index-table clause is a per-row probe (``EXISTS`` on the table's (type, id, param) index), so
# a common value (code=heart-rate) is never materialised as a whole.
# A composite ranks before a token: its first component is one, with more conditions besides.
LEAD_RANK = {"_id": 0, "reference": 1, "composite": 1.5, "token": 2, "string": 3, "uri": 3, "date": 4, "number": 4,
             "quantity": 4}


def _lead(query: Query) -> Clause | None:
    candidates = [c for c in query.clauses
                  if isinstance(c, Clause) and c.param != "_lastUpdated" and c.modifier not in ("not", "missing")]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (LEAD_RANK["_id"] if c.param == "_id" else LEAD_RANK.get(c.type, 5),
                                           c.modifier is not None, len(c.values)))


def _where(query: Query, lead_allowed: bool = True) -> tuple[list[str], list]:
    """The WHERE conditions on ``resource r``. The probes of index-table clauses run inside the
    leading clause's subquery, on its ids, so only matching resources are looked up. Without a
    lead (``lead_allowed`` False) every clause is a probe on ``r``."""
    where, args = ["r.type=?", "r.deleted=0"], [query.type]
    lead = _lead(query) if lead_allowed else None
    nested = lead is not None and lead.param != "_id"  # an _id list leads without a subquery
    probes, probe_args = [], []
    for clause in query.clauses:
        if clause is lead:
            continue
        sql, cargs = _clause(query.type, clause, probe=True, owner="x" if nested else "r")
        if nested and sql.startswith(("EXISTS", "NOT EXISTS")):
            probes.append(sql)
            probe_args += cargs
        else:
            where.append(sql)
            args += cargs
    if lead is not None:
        sql, cargs = _clause(query.type, lead, probe=False, also=probes)
        where.append(sql)
        args += cargs + probe_args
    return where, args


# Missing sort values sort last both ways: an empty BLOB sorts after every number and text.
MISSING_LAST_ASC = "X''"
MISSING_LAST_DESC = "-1e308"


def compile_page(query: Query, limit: int, after: list | None, *, backward: bool = False, inclusive: bool = False,
                 walk_index: bool = False):
    """SQL for one page: rows (id, version, last_updated, json, sort keys...) and a function
    giving a row's cursor key. ``backward``: the rows before ``after``, nearest first (the order
    with every key's direction flipped; the caller reverses them); ``inclusive``: ``after``'s
    own row too. ``walk_index``: sort by walking the sort parameter's index when ``walkable``."""
    walk = _sort_walk(query, limit, after, backward, inclusive) if walk_index else _id_walk(query, limit, after,
                                                                                            backward, inclusive)
    if walk is not None:
        return walk
    where, args = _where(query)
    keys = []
    for param, desc in query.sort:
        if param in SORT_COLUMNS:
            keys.append((SORT_COLUMNS[param], desc))
            continue
        table, low, high = SORT_LOOKUP[search_params.param(query.type, param).type]
        agg, missing = (f"max({high})", MISSING_LAST_DESC) if desc else (f"min({low})", MISSING_LAST_ASC)
        keys.append((f"coalesce((SELECT {agg} FROM {table} x INDEXED BY {table}_res WHERE x.type=r.type AND x.id=r.id "
                     f"AND x.param='{_sql_literal(param)}'), {missing})", desc))
    if not keys or keys[-1][0] != "r.id":
        keys.append(("r.id", keys[-1][1] if keys else False))  # the id breaks ties: the order is total
    if backward:  # the sort expressions stay (missing values keep their place), only directions flip
        keys = [(c, not d) for c, d in keys]
    if after is not None:
        where.append(_after(keys, inclusive))
        args += _after_args(keys, [_from_cursor(v) for v in after])
    # A `+` makes the id order unusable for index selection, so a _lastUpdated range can drive
    # through resource_type_updated instead of a walk of every row of the type in id order.
    ranged = not query.sort and any(getattr(c, "param", None) == "_lastUpdated" for c in query.clauses)
    order = ", ".join(f"{'+' if ranged and c == 'r.id' else ''}{c} {'DESC' if d else 'ASC'}" for c, d in keys)
    extra = "".join(f", {c}" for c, _ in keys)
    sql = (f"SELECT r.id, r.version, r.last_updated, r.json{extra} FROM resource r "
           f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?")
    return sql, (*args, limit), lambda row: [_to_cursor(v) for v in row[4:]]


# Value indexes that list a parameter's values in order: (table, ascending column, descending
# column, index for each). Sorting by one of these parameters can walk the index.
SORT_WALK = {
    "date": ("idx_date", "lo", "hi", "idx_date_lo", "idx_date_hi"),
    "string": ("idx_string", "value", "value", "idx_string_value", "idx_string_value"),
    "number": ("idx_number", "value", "value", "idx_number_value", "idx_number_value"),
    "token": ("idx_token", "code", "code", "idx_token_code", "idx_token_code"),
    "uri": ("idx_uri", "value", "value", "idx_uri_value", "idx_uri_value"),
}


# Walk the sort index only when the leading clause matches at least this many resources (the
# store counts up to it first): fewer candidates sort faster than an index walk finds them.
WALK_MIN = 2000


def walkable(query: Query) -> bool:
    """Whether ``_sort`` could walk its parameter's index: one sort key on an index-table
    parameter, and no selective (``_id`` or reference) clause to lead instead."""
    if len(query.sort) != 1 or query.sort[0][0] in SORT_COLUMNS:
        return False
    lead = _lead(query)
    if lead is not None and LEAD_RANK["_id" if lead.param == "_id" else lead.type] <= LEAD_RANK["reference"]:
        return False
    return search_params.param(query.type, query.sort[0][0]).type in SORT_WALK


def compile_candidate_count(query: Query, cap: int):
    """How many index rows the leading clause matches (an upper bound of the candidates), counted
    up to ``cap`` straight from its index: cheap whatever the clause matches in all."""
    lead = _lead(query)
    if lead is None:
        return "SELECT count(*) FROM (SELECT 1 FROM resource r WHERE r.type=? AND r.deleted=0 LIMIT ?)", (query.type, cap)
    sql, args = _clause(query.type, lead, probe=False)
    inner = sql[len("r.id IN ("):-1]
    return f"SELECT count(*) FROM ({inner} LIMIT ?)", (*args, cap)


def _sort_walk(query: Query, limit: int, after: list | None, backward: bool = False, inclusive: bool = False):
    """``_sort`` by one parameter when no selective clause (``_id``, a reference) leads: walk the
    parameter's value index in order, keep each resource's lowest (ascending) or highest
    (descending) row, probe the other clauses per row, and stop after the page; the resources
    without a value come after them, by id. Same order and cursor keys as the general plan;
    ``backward`` walks the same way round (the caller reverses the rows)."""
    if len(query.sort) != 1 or query.sort[0][0] in SORT_COLUMNS:
        return None
    if not walkable(query):
        return None
    param, desc = query.sort[0]
    walk = SORT_WALK.get(search_params.param(query.type, param).type)
    if walk is None:
        return None
    if after is not None and len(after) != 2:
        raise invalid("The paging cursor does not fit this search; start the search again", "_cursor")
    table, low, high, low_index, high_index = walk
    col, index, extreme = (high, high_index, ">") if desc else (low, low_index, "<")
    order = "DESC" if desc != backward else "ASC"
    before = "<" if order == "DESC" else ">"
    missing = float(MISSING_LAST_DESC) if desc else b""
    present = " AND s.code IS NOT NULL" if table == "idx_token" else ""
    where, args = _where(query, lead_allowed=False)
    where2, args2 = _where(query)  # the resources without a value: the leading clause's ids drive
    at_missing = after is not None and _from_cursor(after[0]) == missing
    eq = "=" if inclusive else ""

    def with_values(keyset: bool):
        cond, cargs = "", []
        if keyset:
            cond = f" AND (s.{col} {before} ? OR (s.{col} = ? AND r.id {before}{eq} ?))"
            cargs = [_from_cursor(after[0]), _from_cursor(after[0]), after[1]]
        return (f"SELECT r.id, r.version, r.last_updated, r.json, s.{col}, r.id FROM {table} s INDEXED BY {index} "
                f"JOIN resource r ON r.type=s.type AND r.id=s.id WHERE s.type=? AND s.param=?{present} "
                f"AND NOT EXISTS (SELECT 1 FROM {table} s2 INDEXED BY {table}_res WHERE s2.type=s.type "
                f"AND s2.id=s.id AND s2.param=s.param AND (s2.{col} {extreme} s.{col} "
                f"OR (s2.{col} = s.{col} AND s2.rowid > s.rowid))) AND {' AND '.join(where)}{cond} "
                f"ORDER BY s.{col} {order}, r.id {order} LIMIT ?", [query.type, param, *args, *cargs, limit])

    def without_value(keyset: bool):
        cond, cargs = (f" AND r.id {before}{eq} ?", [after[1]]) if keyset else ("", [])
        return (f"SELECT r.id, r.version, r.last_updated, r.json, ?, r.id FROM resource r WHERE {' AND '.join(where2)} "
                f"AND NOT EXISTS (SELECT 1 FROM {table} y INDEXED BY {table}_res WHERE y.type=r.type AND y.id=r.id "
                f"AND y.param=?{present.replace('s.', 'y.')}){cond} ORDER BY r.id {order} LIMIT ?",
                [missing, *args2, param, *cargs, limit])

    if not backward:  # values first, then the resources without one
        parts = [without_value(True)] if at_missing else [with_values(after is not None), without_value(False)]
    else:
        parts = [without_value(True), with_values(False)] if at_missing else [with_values(True)]
    if len(parts) == 1:
        sql, args = parts[0]
    else:
        sql = " UNION ALL ".join(f"SELECT * FROM ({p[0]})" for p in parts)
        sql = f"SELECT * FROM ({sql}) LIMIT ?"
        args = [a for p in parts for a in p[1]] + [limit]
    return sql, tuple(args), lambda row: [_to_cursor(row[4]), row[5]]


def _id_walk(query: Query, limit: int, after: list | None, backward: bool = False, inclusive: bool = False):
    """A page in id order (no ``_sort``) when the leading clause is one value pinning every column
    of its value index before the id (a token ``system|code``, a reference, a uri) and the other
    clauses are probes inside it: that index lists the matching ids in id order, so the page is
    the next ``limit`` ids after the cursor read from it, not every match sorted again for each
    page (``Observation?code=<common code>`` paged through 200,000 results). None otherwise."""
    lead = _lead(query)
    if query.sort or lead is None or not _pinned(lead):
        return None
    direct = _ids_from_index(query)
    if direct is None:
        return None
    if after is not None and len(after) != 1:
        raise invalid("The paging cursor does not fit this search; start the search again", "_cursor")
    inner, args = direct
    order = "DESC" if backward else "ASC"
    if after is not None:
        inner += f" AND x.id {'<' if backward else '>'}{'=' if inclusive else ''} ?"
        args = [*args, after[0]]
    sql = (f"SELECT r.id, r.version, r.last_updated, r.json, r.id FROM "
           f"({inner.replace('SELECT x.id', 'SELECT DISTINCT x.id AS id', 1)} ORDER BY x.id {order} LIMIT ?) m "
           f"JOIN resource r ON r.type=? AND r.id=m.id ORDER BY m.id {order}")
    return sql, (*args, limit, query.type), lambda row: [row[4]]


# The value index of each table whose columns before the id a pinned value fixes (``_pinned``).
PINNED_INDEX = {"idx_token": "idx_token_code", "idx_reference": "idx_reference_target", "idx_uri": "idx_uri_value"}


def _pinned(c: Clause) -> bool:
    """One value fixing every column of its value index before the id: a token ``system|code``,
    a reference, a uri (no modifier). Its matches are one run of that index, in id order."""
    if c.param == "_id" or c.modifier or len(c.values) != 1 or c.type == "composite":
        return False
    v = c.values[0]
    return c.type in ("reference", "uri") or (c.type == "token" and bool(v.system) and bool(v.text))


# ``_has`` probes each candidate for a referrer (``Referrers``) rather than list the referenced
# ids when the referrers' query matches at least this many index rows (or the chain bound, if
# lower: an id set then never passes the bound). Below it the id set is cheaper: a rare code's
# 5,000 Observations are read faster than the Patients probed one by one until a page is full.
PROBE_MIN = 10_000


def probeable(query: Query) -> bool:
    """Whether every clause of ``query`` compiles to a probe of one index row's resource (no
    ``_id`` or ``_lastUpdated``, which live in ``resource``), so ``Referrers`` can hold it."""
    return bool(query.clauses) and all(isinstance(c, Referrers) or c.param not in ("_id", "_lastUpdated")
                                       for c in query.clauses)


def _referrers(type: str, f: Referrers, owner: str) -> tuple[str, list]:
    """EXISTS a resource matching ``f.query`` that references ``owner`` through ``f.param``: the
    (type, param, target) index lists the owner's referrers, each probed for the query's clauses."""
    alias = owner + "z"  # unique per nesting level: a nested _has probes its own referrers
    probes, args = [], []
    for c in f.query.clauses:
        sql, cargs = _clause(f.query.type, c, probe=True, owner=alias)  # a nested _has too
        probes.append(sql)
        args += cargs
    return (f"EXISTS (SELECT 1 FROM idx_reference {alias} INDEXED BY idx_reference_target WHERE {alias}.type=? "
            f"AND {alias}.param=? AND {alias}.target=? || {owner}.id{''.join(' AND ' + p for p in probes)})",
            [f.query.type, f.param, type + "/", *args])


def _sql_literal(code: str) -> str:
    """A search parameter code inside SQL text (codes are [a-z0-9-_:]; quotes doubled anyway)."""
    return code.replace("'", "''")


def _to_cursor(v):
    return {"b": v.hex()} if isinstance(v, bytes) else v


def _from_cursor(v):
    return bytes.fromhex(v["b"]) if isinstance(v, dict) else v


def _ids_from_index(query: Query) -> tuple[str, list] | None:
    """The matching ids straight from the index tables, without touching ``resource`` (index
    rows exist only for current, undeleted versions), when every condition lives in the
    leading clause's subquery; else None."""
    where, args = _where(query)
    if len(where) != 3 or not where[2].startswith("r.id IN (SELECT x.id FROM "):
        return None
    return where[2][len("r.id IN ("):-1], args[1:]


def compile_ids(query: Query, limit: int):
    direct = _ids_from_index(query)
    if direct is not None:
        return f"SELECT DISTINCT id FROM ({direct[0]}) LIMIT ?", (*direct[1], limit)
    where, args = _where(query)
    return f"SELECT r.id FROM resource r WHERE {' AND '.join(where)} LIMIT ?", (*args, limit)


def compile_distinct_references(query: Query, param: str | None, limit: int):
    """Distinct targets referenced (through ``param``, or any) by resources matching ``query``."""
    by_param = " AND z.param=?" if param else ""
    direct = _ids_from_index(query)
    if direct is not None:
        sql = (f"SELECT DISTINCT z.target FROM idx_reference z INDEXED BY idx_reference_res WHERE z.type=?{by_param} "
               f"AND z.id IN ({direct[0]}) LIMIT ?")
        return sql, (query.type, *([param] if param else []), *direct[1], limit)
    where, args = _where(query)
    sql = (f"SELECT DISTINCT z.target FROM resource r JOIN idx_reference z INDEXED BY idx_reference_res "
           f"ON z.type=r.type AND z.id=r.id{by_param} WHERE {' AND '.join(where)} LIMIT ?")
    return sql, (*([param] if param else []), *args, limit)


def compile_count(query: Query):
    where, args = _where(query)
    return f"SELECT count(*) FROM resource r WHERE {' AND '.join(where)}", args


def _after(keys: list[tuple[str, bool]], inclusive: bool = False) -> str:
    """Keyset condition: the row comes after the cursor in (k1, k2, ...) order (``inclusive``:
    or is the cursor's row; the last key, the id, is unique)."""
    ors = []
    for i, (col, desc) in enumerate(keys):
        eqs = [f"{c}=?" for c, _ in keys[:i]]
        op = ("<" if desc else ">") + ("=" if inclusive and i == len(keys) - 1 else "")
        ors.append("(" + " AND ".join(eqs + [f"{col}{op}?"]) + ")")
    return "(" + " OR ".join(ors) + ")"


def _after_args(keys, after: list) -> list:
    if len(after) != len(keys):
        raise invalid("The paging cursor does not fit this search; start the search again", "_cursor")
    args = []
    for i in range(len(keys)):
        args += after[:i] + [after[i]]
    return args


def _clause(type: str, c: Clause, probe: bool, owner: str = "r", also: list[str] = ()) -> tuple[str, list]:
    """One clause as SQL. ``owner`` is the alias whose (type, id) a probe looks up; ``also``
    are probe conditions added to a leading subquery."""
    if isinstance(c, Referrers):
        return _referrers(type, c, owner)
    if c.param == "_id":
        marks = ",".join("?" * len(c.values))
        op = "NOT IN" if c.modifier == "not" else "IN"
        return f"r.id {op} ({marks})", [v.text for v in c.values]
    if c.param == "_lastUpdated":
        ors, args = [], []
        for v in c.values:
            sql, a = date_cond(v, "r.last_updated", "r.last_updated")
            ors.append(sql)
            args += a
        return "(" + " OR ".join(ors) + ")", args
    if c.type == "composite":  # no modifiers; component 0 of an element matching an alternative
        sql, args = sqlite_composite.condition(c, "y" if probe else "x")
        return _subquery(type, "idx_composite", stored_as(type, c.param), sql, args, False, probe, owner, also)
    table = "idx_token" if c.modifier == "identifier" else TABLE_BY_TYPE[c.type]
    param = f"{c.param}:{c.modifier}" if c.modifier in ("identifier", "of-type") else c.param
    if c.modifier == "missing":  # :missing=true: no row for the parameter; false: some row
        return _subquery(type, table, param, None, [], c.values[0].text.lower() == "true", True, owner, also)
    negated = c.modifier == "not"
    if len(c.values) > 1 and c.type == "reference" and c.modifier != "identifier":
        # many targets (a resolved chain, an include): one IN list, not thousands of ORs
        targets = [ref_target(c, v) for v in c.values]
        return _subquery(type, table, param, f"target IN ({','.join('?' * len(targets))})", targets, negated, probe,
                         owner, also)
    ors, args = [], []
    for v in c.values:
        sql, a = value_cond(c, v)
        ors.append(sql)
        args += a
    return _subquery(type, table, param, " OR ".join(ors), args, negated, probe, owner, also,
                     pinned=probe and _pinned(c))


def _subquery(type: str, table: str, param: str | tuple[str, ...], cond: str | None, args: list, negated: bool,
              probe: bool, owner: str = "r", also: list[str] = (), pinned: bool = False) -> tuple[str, list]:
    """Resources with a row of ``table`` for ``param`` (or any of several) meeting ``cond`` (any
    row when None).

    A probe looks the row up per resource on the (type, id, param) index, or, for a ``pinned``
    value, on the value index with the id as its last column: one seek either way, but the
    probes of one query then all land in the same run of that index (a third faster at 1M
    resources, where the per-resource index is read at random). Otherwise the subquery lists the
    matching ids, which then drive primary-key lookups.
    """
    params = [param] if isinstance(param, str) else list(param)
    of = "=?" if len(params) == 1 else f" IN ({','.join('?' * len(params))})"
    where = f" AND ({cond})" if cond else ""
    if probe or negated:
        index = PINNED_INDEX[table] if pinned and not negated else f"{table}_res"
        return (f"{'NOT ' if negated else ''}EXISTS (SELECT 1 FROM {table} y INDEXED BY {index} "
                f"WHERE y.type={owner}.type AND y.id={owner}.id AND y.param{of}{where})", [*params, *args])
    extra = "".join(f" AND {p}" for p in also)
    return f"r.id IN (SELECT x.id FROM {table} x WHERE x.type=? AND x.param{of}{where}{extra})", [type, *params, *args]
