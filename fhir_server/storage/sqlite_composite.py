"""SQLite's composite index: ``idx_composite`` rows and the SQL of a composite clause.

A row is one value of one component of one element (``values.py``): ``(type, param, elem, comp,
<value columns>, id)``. The value columns are those the single-type tables use for the
component's type, so ``sqlite_values`` compiles each component as it compiles that type:
token ``system, code``; string ``value`` (folded); date ``lo, hi``; number ``value``; quantity
``value, system, code, cvalue, ccode``; uri ``value``; a reference's target is in ``code``, so
that the leading index serves reference components as well as token ones.

A composite alternative ``a$b`` matches a row of component 0 meeting ``a`` that has, on the
same element (``elem``), a row of component 1 meeting ``b``: the condition on the first
component is on the row the clause's subquery reads (``x`` when it leads, ``y`` when it is a
probe), and each further component is an ``EXISTS`` on the ``(type, id, param, elem, comp)``
index. The first component of every R4 composite is a token or a reference, so a leading
composite clause starts from ``idx_composite_code`` ``(type, param, comp, code, system)``; with
several alternatives, the codes they name are also listed as one ``code IN (...)``, which SQLite
seeks (it does not split an ``OR`` of such terms into index lookups). A composite answered from
other composites' rows (``composite.stored_as``: ``combo-*``) reads them all, ``param IN (...)``.
"""

from __future__ import annotations

import sqlite3

from fhir_server.search.plan import Clause
from fhir_server.storage.sqlite_values import value_cond

SCHEMA = """
CREATE TABLE IF NOT EXISTS idx_composite (type TEXT, param TEXT, elem INTEGER, comp INTEGER, system TEXT, code TEXT,
  value, lo TEXT, hi TEXT, cvalue REAL, ccode TEXT, id TEXT);
CREATE INDEX IF NOT EXISTS idx_composite_code ON idx_composite (type, param, comp, code, system);
CREATE INDEX IF NOT EXISTS idx_composite_res ON idx_composite (type, id, param, elem, comp);
"""

# A component row's value columns (system, code, value, lo, hi, cvalue, ccode) by its type.
_COLUMNS = {
    "token": lambda r: (r[0], r[1], None, None, None, None, None),
    "string": lambda r: (None, None, r[0], None, None, None, None),
    "date": lambda r: (None, None, None, r[0], r[1], None, None),
    "reference": lambda r: (None, r[0], None, None, None, None, None),
    "uri": lambda r: (None, None, r[0], None, None, None, None),
    "number": lambda r: (None, None, float(r[0]), None, None, None, None),
    "quantity": lambda r: (r[1], r[2], float(r[0]), None, None, float(r[3]), r[4]),
}


def insert(conn: sqlite3.Connection, type: str, id: str, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO idx_composite VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(type, param, elem, comp, *_COLUMNS[kind](row), id) for param, elem, comp, kind, row in rows],
    )


def condition(c: Clause, alias: str) -> tuple[str, list]:
    """The condition on ``alias``, a row of ``idx_composite`` for ``c.param``, that makes its
    resource match ``c``: the row is component 0 of an element matching one alternative."""
    alternatives, args = [], []
    for v in c.values:
        terms = []
        for position, part in enumerate(v.parts):
            sql, part_args = _component(part)
            if position:
                t = f"c{position}"
                sql = (f"EXISTS (SELECT 1 FROM idx_composite {t} INDEXED BY idx_composite_res "
                       f"WHERE {t}.type={alias}.type AND {t}.id={alias}.id AND {t}.param={alias}.param "
                       f"AND {t}.elem={alias}.elem AND {t}.comp={position} AND ({sql}))")
            terms.append(sql if position else f"({sql})")
            args += part_args
        alternatives.append(" AND ".join(terms))
    sql = f"{alias}.comp=0 AND ({' OR '.join(f'({a})' for a in alternatives)})"
    codes = _first_codes(c)
    if codes is not None and len(codes) > 1:  # lets SQLite seek each code instead of scanning the param
        return f"{alias}.comp=0 AND {alias}.code IN ({','.join('?' * len(codes))}) AND ({sql})", [*codes, *args]
    return sql, args


def _first_codes(c: Clause) -> list[str] | None:
    """The codes (token codes, reference targets) the alternatives' first components require,
    or None when one of them allows any code (``system|``, a first component of another type)."""
    codes: dict[str, None] = {}
    for v in c.values:
        first = v.parts[0]
        for pv in first.values:
            if first.type not in ("token", "reference") or not pv.text:
                return None
            codes[pv.text] = None
    return list(codes)


def _component(part: Clause) -> tuple[str, list]:
    """Any value of one component (a bare reference id may stand for several typed targets)."""
    ors, args = [], []
    for v in part.values:
        sql, a = ("code=?", [v.text]) if part.type == "reference" else value_cond(part, v)
        ors.append(sql)
        args += a
    return " OR ".join(f"({o})" for o in ors) if len(ors) > 1 else ors[0], args
