"""Running a search plan against a store: chains, ``_has`` and includes, over bounded id sets.

A forward chain (``patient.identifier=S|V``) becomes a reference clause listing the matching
targets; a reverse chain (``_has:Observation:patient:code=Y``) becomes an ``_id`` clause listing
the referenced resources. Each set is bounded: past ``bound`` ids the search is refused with a
400 asking to narrow it, rather than building an unbounded query. Adapters thus see plain
clauses, and one more filter where they ask for it: a ``_has`` whose referrers are many becomes
``Referrers`` for an adapter that probes each candidate for one (``Store.probes_referrers``:
the embedded store), so ``Patient?_has:Observation:patient:code=<common code>`` reads one page
of Patients instead of every matching Observation.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Awaitable, Callable

import orjson
from dataclasses import dataclass, replace

from fhir_server.errors import too_costly
from fhir_server.search import params as search_params
from fhir_server.search.plan import Chain, Clause, Filter, Include, InList, Query, Referrers, Value
from fhir_server.storage.port import SearchPage, Store, Stored

ITERATE_DEPTH = 3


class NoMatch(Exception):
    """A chain or _has matched nothing, so the whole (AND) query matches nothing."""


# Extra clauses that keep a chained or reverse-chained search of a type within what the caller
# may search (access control); None: no limit.
Limit = Callable[[str], Awaitable[tuple[Clause, ...]]] | None


async def resolve(store: Store, query: Query, bound: int, limit: Limit = None) -> Query | None:
    """``query`` with every chain and _has replaced by a plain clause; None if it cannot match."""
    if all(isinstance(c, (Clause, Referrers)) for c in query.clauses):
        return query
    try:
        clauses = tuple([await _resolve(store, query.type, c, bound, limit) for c in query.clauses])
    except NoMatch:
        return None
    return replace(query, clauses=clauses)


async def _limited(t: str, inner: Clause, limit: Limit) -> Query:
    return Query(t, (inner, *(await limit(t) if limit else ())))


async def _resolve(store: Store, type: str, f: Filter, bound: int, limit: Limit = None) -> Clause | Referrers:
    if isinstance(f, Clause):
        return f
    if isinstance(f, InList):
        return await _list_members(store, type, f)
    if isinstance(f, Chain):
        targets: list[str] = []
        for t in f.targets:
            try:
                inner = await _resolve(store, t, f.inner, bound, limit)
            except NoMatch:
                continue
            ids = await store.search_ids(await _limited(t, inner, limit), bound + 1)
            targets += [f"{t}/{i}" for i in ids]
            if len(targets) > bound:
                raise too_costly(f"The chain {f} matches more than {bound} resources; narrow the search", str(f))
        if not targets:
            raise NoMatch
        return Clause(f.param, "reference", None, tuple(Value(text=t) for t in targets))
    inner = await _resolve(store, f.type, f.inner, bound, limit)
    referring = await _limited(f.type, inner, limit)
    if await store.probes_referrers(referring, bound):  # many referrers: probe each candidate instead
        return Referrers(f.param, referring)
    refs = await store.distinct_references(referring, f.param, bound + 1)
    if len(refs) > bound:
        raise too_costly(f"{f} matches more than {bound} {type} resources; narrow the search", str(f))
    ids = [r.partition("/")[2] for r in refs if r.startswith(type + "/")]
    if not ids:
        raise NoMatch
    return Clause("_id", "token", None, tuple(Value(text=i) for i in ids))


async def search(store: Store, query: Query, *, count: int, cursor: str | None, total: bool, bound: int,
                 limit: Limit = None) -> SearchPage:
    resolved = await resolve(store, query, bound, limit)
    if resolved is None:
        return SearchPage([], 0 if total else None, None)
    return await store.search(resolved, count=count, cursor=cursor, total=total)


async def _list_members(store: Store, type: str, f: InList) -> Clause:
    """The ``_id`` clause of the items of a List that are resources of ``type``."""
    stored = await store.read("List", f.list_id)
    if stored is None or stored.deleted:
        raise NoMatch
    ids = []
    for item in orjson.loads(stored.json).get("entry") or []:
        ref = (item.get("item") or {}).get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref.startswith(type + "/") and not item.get("deleted"):
            ids.append(ref.partition("/")[2].split("/_history")[0])
    if not ids:
        raise NoMatch
    return Clause("_id", "token", None, tuple(Value(text=i) for i in ids))


@dataclass(slots=True)
class Included:
    resources: list[Stored]
    left_out: list[str]  # what was not included, for the Bundle's OperationOutcome


async def include(store: Store, query: Query, matches: list[Stored], limit: int) -> Included:
    """The resources ``_include``/``_revinclude`` add to a page of ``matches``, at most ``limit``.

    Never silently truncated: whatever did not fit is named in ``left_out``.
    """
    out: list[Stored] = []
    left_out: list[str] = []
    seen = {(s.type, s.id) for s in matches}
    frontier = list(matches)
    plain = [i for i in query.includes if not i.iterate]
    iterating = [i for i in query.includes if i.iterate]
    for depth in range(ITERATE_DEPTH + 1):
        rules = plain + iterating if depth == 0 else iterating
        if not rules or not frontier:
            break
        added: list[Stored] = []
        for rule in rules:
            room = limit - len(out) - len(added)
            if room <= 0:
                left_out.append(f"{rule}: the page already includes {limit} resources")
                continue
            found, more = await (_reverse(store, rule, frontier, room) if rule.reverse else _forward(store, rule, frontier, room))
            for s in found:
                if (s.type, s.id) not in seen:
                    seen.add((s.type, s.id))
                    added.append(s)
            if more:
                left_out.append(f"{rule}: more than {room} resources to include; page with a smaller _count")
        out += added
        frontier = added
    return Included(out, left_out)


async def _forward(store: Store, rule: Include, frontier: list[Stored], room: int) -> tuple[list[Stored], bool]:
    ids = [s.id for s in frontier if s.type == rule.source]
    if not ids:
        return [], False
    query = Query(rule.source, (Clause("_id", "token", None, tuple(Value(text=i) for i in ids)),))
    refs = await store.distinct_references(query, None if rule.param == "*" else rule.param, room + 1)
    by_type: dict[str, list[str]] = defaultdict(list)
    for ref in refs[:room]:
        t, _, i = ref.partition("/")
        if i and "/" not in i and t in search_params.resource_types() and (rule.target in (None, t)):
            by_type[t].append(i)
    found = []
    for t, tids in by_type.items():
        found += await store.read_many(t, tids)
    return found, len(refs) > room


async def _reverse(store: Store, rule: Include, frontier: list[Stored], room: int) -> tuple[list[Stored], bool]:
    targets = [f"{s.type}/{s.id}" for s in frontier if rule.target in (None, s.type)]
    if not targets:
        return [], False
    params = ([rule.param] if rule.param != "*" else
              [c for c, p in search_params.params_for(rule.source).items() if p.type == "reference"])
    found: list[Stored] = []
    more = False
    for code in params:
        query = Query(rule.source, (Clause(code, "reference", None, tuple(Value(text=t) for t in targets)),))
        page = await store.search(query, count=room - len(found) + 1, cursor=None, total=False)
        more = more or page.next_cursor is not None or len(page.entries) > room - len(found)
        found += page.entries[: room - len(found)]
        if len(found) >= room:
            break
    return found, more
