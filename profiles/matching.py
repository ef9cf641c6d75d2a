"""Which of our artifacts a search matches, evaluated in memory over their index values.

The artifacts are not in the store (``profiles.artifacts``), so a search of their types asks
this module too. It evaluates the parsed query (``fhir_server.search.plan``) over the values the
store would index (``fhir_server.search.extract``): ``_id`` and token, string and uri parameters
with their modifiers (``:exact``, ``:contains``, ``:text``, ``:not``, ``:missing``, ``:below``,
``:above``), which covers ``url``, ``name``, ``title``, ``status``, ``version``, ``type``,
``kind``, ``code``, ``base``, ``system``... A query with any other filter (dates, numbers,
references, chains, ``_has``, ``_list``), or sorted with ``_sort``, matches no artifact: answer
honestly that this is not evaluated here rather than guess (docs/profiles.md).
"""

from __future__ import annotations

from functools import cache

from fhir_server.search.extract import extract
from fhir_server.search.normalize import fold
from fhir_server.search.plan import Clause, Query, Value
from fhir_server.search.values import IndexValues
from profiles import artifacts

EVALUATED = frozenset({"token", "string", "uri"})


@cache
def _index(type: str, id: str) -> IndexValues:
    return extract(artifacts.catalog().by_key[(type, id)])


def _token(v: Value, system: str | None, code: str | None) -> bool:
    if code != v.text:
        return False
    return v.system is None or (system or "") == v.system


def _clause(c: Clause, id: str, ix: IndexValues) -> bool:
    if c.param == "_id":
        hit = any(v.text == id for v in c.values)
        return not hit if c.modifier == "not" else hit
    if c.type == "token":
        rows = [(s, code, text) for p, s, code, text in ix.tokens if p == c.param]
        if c.modifier == "missing":
            return (not rows) == (c.values[0].text == "true")
        if c.modifier == "text":
            return any(text and text.startswith(fold(v.text)) for v in c.values for _, _, text in rows)
        hit = any(_token(v, s, code) for v in c.values for s, code, _ in rows)
        return not hit if c.modifier == "not" else hit
    if c.type == "string":
        rows = [(folded, exact) for p, folded, exact in ix.strings if p == c.param]
        if c.modifier == "missing":
            return (not rows) == (c.values[0].text == "true")
        if c.modifier == "exact":
            return any(exact == v.text for v in c.values for _, exact in rows)
        if c.modifier == "contains":
            return any(fold(v.text) in folded for v in c.values for folded, _ in rows)
        return any(folded.startswith(fold(v.text)) for v in c.values for folded, _ in rows)
    rows = [value for p, value in ix.uris if p == c.param]  # uri
    if c.modifier == "missing":
        return (not rows) == (c.values[0].text == "true")
    if c.modifier == "below":
        return any(value.startswith(v.text) for v in c.values for value in rows)
    if c.modifier == "above":
        return any(v.text.startswith(value) for v in c.values for value in rows)
    return any(value == v.text for v in c.values for value in rows)


def evaluable(query: Query) -> bool:
    """Filters this module evaluates, and no ``_sort``: the artifacts come before the store's
    page, so they cannot take their place in a sorted order (a sorted search lists the store's)."""
    return not query.sort and all(isinstance(c, Clause) and (c.param == "_id" or c.type in EVALUATED)
                                  for c in query.clauses)


def matching(query: Query) -> list[tuple[str, str]]:
    """(type, id) of the artifacts of ``query.type`` that match every filter, by id."""
    if query.type not in artifacts.TYPES or not evaluable(query):
        return []
    keys = sorted(k for k in artifacts.catalog().by_key if k[0] == query.type)
    return [k for k in keys if all(_clause(c, k[1], _index(*k)) for c in query.clauses)]
