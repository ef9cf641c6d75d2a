"""The store as a transaction Bundle sees it while planning: the committed state plus its own writes.

The entries of a transaction are processed in the spec's order (DELETE, POST, PUT/PATCH, GET), and
each must see what the entries before it did: a conditional create after a DELETE of its only match
creates; a resource read after a PUT is the new version. ``Pending`` wraps the store for that:

- ``read``/``vread`` answer the version planned in this transaction, if any (``read`` also
  what ``prefetch`` read ahead for the entries that name their resource);
- ``search`` (used for conditional matching) leaves out resources this transaction deletes. It
  does not re-match resources the transaction creates or changes (there is no in-memory search);
- ``referrers`` answers nothing: referential integrity is checked once, on the state the whole
  transaction leaves (``dangling``), so a Bundle may delete a resource together with its referrers;
- ``seen`` keeps what the store itself matched per query, so the commit's guards compare against
  the state before the transaction (``rebased``).
"""

from __future__ import annotations

from fhir_server.search.plan import Query
from fhir_server.storage.port import RECORD_TYPES, Guard, SearchPage, Store, Stored, Write
from fhir_server.write import as_stored


class Pending:
    def __init__(self, store: Store):
        self.store = store
        self.writes: dict[tuple[str, str], Write] = {}
        self.seen: dict[Query, frozenset[str]] = {}
        self.known: dict[tuple[str, str], Stored | None] = {}  # read ahead (``prefetch``)

    async def prefetch(self, keys: set[tuple[str, str]]) -> None:
        """Read the current versions of ``keys`` (type, id) in one query per type, so planning
        the entries that name them does not read them one by one (a load's Bundles are
        hundreds of PUTs: a 30,000-resource load is 6% faster)."""
        by_type: dict[str, list[str]] = {}
        for type, id in keys:
            by_type.setdefault(type, []).append(id)
        for type, ids in by_type.items():
            found = {s.id: s for s in await self.store.read_many(type, ids, deleted=True)}
            for id in ids:
                self.known[(type, id)] = found.get(id)

    def add(self, writes: list[Write]) -> None:
        for w in writes:
            self.writes[(w.type, w.id)] = w

    def _deleted(self, type: str, id: str) -> bool:
        w = self.writes.get((type, id))
        return w is not None and w.deleted

    async def read(self, type: str, id: str) -> Stored | None:
        w = self.writes.get((type, id))
        if w is not None:
            return as_stored(w)
        if (type, id) in self.known:
            return self.known[(type, id)]
        return await self.store.read(type, id)

    async def vread(self, type: str, id: str, version: int) -> Stored | None:
        w = self.writes.get((type, id))
        if w is not None and w.version == version:
            return as_stored(w)
        return await self.store.vread(type, id, version)

    async def search(self, query: Query, *, count: int, cursor: str | None, total: bool) -> SearchPage:
        hidden = sum(1 for (t, _), w in self.writes.items() if t == query.type and w.deleted)
        page = await self.store.search(query, count=count + hidden, cursor=cursor, total=total)
        if cursor is None and page.next_cursor is None:
            self.seen[query] = frozenset(s.id for s in page.entries)
        kept = [s for s in page.entries if not self._deleted(query.type, s.id)]
        more = page.next_cursor is not None or len(kept) > count
        total_left = None if page.total is None else page.total - (len(page.entries) - len(kept))
        return SearchPage(kept[:count], total_left, page.next_cursor if more else None)

    async def referrers(self, targets: list[str], limit: int) -> list[str]:
        return []

    async def history(self, *args, **kwargs):
        return await self.store.history(*args, **kwargs)

    def rebased(self, guards: list[Guard]) -> list[Guard]:
        """The guards, expecting what the store matched before this transaction's writes."""
        return [Guard(g.query, self.seen.get(g.query, g.ids)) for g in guards]

    async def dangling(self, limit: int) -> tuple[str, list[str]] | None:
        """A resource this transaction deletes that a surviving resource still references, with its referrers."""
        deleted = [f"{t}/{i}" for (t, i), w in self.writes.items() if w.deleted]
        for target in deleted:
            refs = [r for r in await self.store.referrers([target], limit + len(self.writes))
                    if self._still_refers(r, target)]
            refs += [f"{t}/{i}" for (t, i), w in self.writes.items()
                     if not w.deleted and w.index is not None and t not in RECORD_TYPES and f"{t}/{i}" not in refs
                     and any(ref == target for _, ref in w.index.references)]
            if refs:
                return target, refs
        return None

    def _still_refers(self, referrer: str, target: str) -> bool:
        w = self.writes.get(tuple(referrer.split("/", 1)))
        if w is None:
            return True
        return not w.deleted and w.index is not None and any(ref == target for _, ref in w.index.references)
