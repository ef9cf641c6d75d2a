"""Reading one resource type as it was at ``transactionTime``, a batch at a time.

Every batch resumes from a position kept in the job record, so the export can stop anywhere and
go on later. A resource whose current version is newer than ``at`` (updated or deleted while the
export runs) is exported as its version current at ``at`` (from history); one created after
``at`` is left out. Two ways to read:

- **scan** (no filter on the type): every current row of the type in id order, deleted ones
  included (``Store.scan``); exact: each resource that existed at ``at`` is seen once.
- **search** (``_typeFilter``, access limits, the patients of a Patient/Group export): the
  search engine's pages of each query in turn (several ``_typeFilter``s of one type are ORed:
  a match of an earlier query is not repeated). Filters are matched on the current index, so a
  resource changed after ``at`` is judged by its current version; its older version is still
  checked against the caller's access and patients, and one deleted after ``at`` is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from fhir_server.search import execute
from fhir_server.search.plan import parse_query
from fhir_server.storage.port import Store, Stored

# Extra check of an older version found for a changed resource (access, patients); None: none.
Check = Callable[[Stored], Awaitable[bool]] | None


@dataclass(slots=True)
class Batch:
    resources: list[Stored]
    read: int  # rows read (for sizing the next batch)
    bytes: int
    done: bool


async def version_at(store: Store, current: Stored, at: str) -> Stored | None:
    if current.last_updated <= at:
        return current
    page = await store.history(current.type, current.id, since=None, at=at, count=1, cursor=None)
    return page.entries[0] if page.entries else None


def _wanted(s: Stored | None, since: str | None, until: str | None) -> bool:
    return (s is not None and not s.deleted and (since is None or s.last_updated > since)
            and (until is None or s.last_updated <= until))


async def next_batch(store: Store, state: dict, at: str, since: str | None, until: str | None, count: int,
                     bound: int, check: Check = None) -> Batch:
    """The next batch of ``state``'s type (``state`` is the job record's entry, updated in place)."""
    if state.get("queries") is None:
        return await _scan(store, state, at, since, until, count)
    return await _search(store, state, at, since, until, count, bound, check)


async def _scan(store: Store, state: dict, at: str, since, until, count: int) -> Batch:
    rows = await store.scan(state["type"], state.get("position"), count)
    out = []
    for s in rows:
        if since is not None and s.last_updated <= since:
            continue  # every older version is older still
        v = await version_at(store, s, at)
        if _wanted(v, since, until):
            out.append(v)
    if rows:
        state["position"] = rows[-1].id
    return Batch(out, len(rows), sum(len(s.json) for s in rows), len(rows) < count)


async def _search(store: Store, state: dict, at: str, since, until, count: int, bound: int, check: Check) -> Batch:
    type, queries, k = state["type"], state["queries"], state.get("query", 0)
    items = [tuple(i) for i in queries[k]] + ([("_lastUpdated", f"ge{since}")] if since else [])
    page = await execute.search(store, parse_query(type, items, strict=True), count=count,
                                cursor=state.get("position"), total=False, bound=bound)
    rows = page.entries
    if k > 0 and rows:  # ORed _typeFilters: leave out what an earlier query already exported
        ids = ",".join(s.id for s in rows)
        seen: set[str] = set()
        for earlier in queries[:k]:
            q = parse_query(type, [tuple(i) for i in earlier] + [("_id", ids)], strict=True)
            seen.update(s.id for s in (await execute.search(store, q, count=len(rows), cursor=None, total=False,
                                                             bound=bound)).entries)
        rows = [s for s in rows if s.id not in seen]
    out = []
    for s in rows:
        v = await version_at(store, s, at)
        if _wanted(v, since, until) and (v is s or check is None or await check(v)):
            out.append(v)
    state["position"] = page.next_cursor
    done = page.next_cursor is None
    if done and k + 1 < len(queries):
        state["query"], state["position"], done = k + 1, None, False
    return Batch(out, len(page.entries), sum(len(s.json) for s in page.entries), done)
