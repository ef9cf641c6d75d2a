"""Where an export reads its snapshot: any ``Store`` through the port, or an SQLite file directly.

Four reads, each resumable from a ``position`` kept in the job record:

- ``scan``: the next ``count`` resources of a type as they were at ``at`` (in id order), with
  ``_since``/``_until`` applied; deleted ones left out.
- ``changed``: ids of resources of a type changed (updated, deleted or created) after ``at``.
- ``versions_at``: the versions of some resources current at ``at``.
- ``deletions``: the deletions of some types in ``(since, at]`` (history entries).

``Reader`` does them with the port's methods (``scan``, ``history``, ``read``), on the event
loop. ``SQLiteReader`` opens its own read-only connection to the store's file and runs each call
in a worker thread, one read transaction per call: the rows current at ``at`` are selected in
SQL (no per-row Python), the few changed after ``at`` are found by the ``(type, last_updated)``
index and replaced by their version at ``at`` from history, all from one consistent view. It
knows the ``resource`` and ``history`` tables of ``storage/sqlite.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_server.storage.port import Store, Stored


@dataclass(slots=True)
class Rows:
    bodies: list[bytes]  # the stored JSON of the versions to export
    ids: list[str] | None  # their ids (when asked for)
    read: int  # rows read (for sizing the next batch)
    bytes: int
    position: Any
    done: bool
    data: bytes | None = None  # or, when asked for ``joined``: their NDJSON lines, ``lines`` of them
    lines: int = 0


def wanted(s: Stored | None, since: str | None, until: str | None) -> bool:
    return (s is not None and not s.deleted and (since is None or s.last_updated > since)
            and (until is None or s.last_updated <= until))


def for_store(store: Store) -> "Reader":
    from fhir_server.storage.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore) and store.path != ":memory:":
        return SQLiteReader(store)
    return Reader(store)


class Reader:
    def __init__(self, store: Store):
        self.store = store

    async def scan(self, type: str, after: str | None, count: int, at: str, since: str | None, until: str | None,
                   with_ids: bool = False, joined: bool = False) -> Rows:
        """``joined``: the lines may come as one NDJSON ``data`` (a reader may still give ``bodies``)."""
        rows = await self.store.scan(type, after, count)
        out: list[Stored] = []
        for s in rows:
            if since is not None and s.last_updated <= since:
                continue  # every older version is older still
            v = s if s.last_updated <= at else (await self.versions_at(type, [s.id], at)).get(s.id)
            if wanted(v, since, until):
                out.append(v)
        return Rows([s.json for s in out], [s.id for s in out] if with_ids else None, len(rows),
                    sum(len(s.json) for s in rows), rows[-1].id if rows else after, len(rows) < count)

    async def changed(self, type: str, at: str, position: str | None, count: int) -> tuple[list[str], Any, bool]:
        page = await self.store.history(type, None, since=at, at=None, count=count, cursor=position)
        ids = list(dict.fromkeys(s.id for s in page.entries if s.last_updated > at))
        return ids, page.next_cursor, page.next_cursor is None

    async def versions_at(self, type: str, ids: list[str], at: str) -> dict[str, Stored]:
        out = {}
        for id in ids:
            current = await self.store.read(type, id)
            if current is None:
                continue
            if current.last_updated <= at:
                out[id] = current
                continue
            page = await self.store.history(type, id, since=None, at=at, count=1, cursor=None)
            if page.entries:
                out[id] = page.entries[0]
        return out

    async def deletions(self, types: list[str], since: str, at: str, position: str | None,
                        count: int) -> tuple[list[Stored], Any, bool]:
        """One pass over the history since ``since`` for every type (not one per type)."""
        page = await self.store.history(None, None, since=since, at=None, count=count, cursor=position)
        wanted_types = set(types)
        rows = [s for s in page.entries if s.deleted and s.type in wanted_types and since < s.last_updated <= at]
        return rows, page.next_cursor, page.next_cursor is None

    def close(self) -> None:
        pass


# The SQLite reader's statements, each pinned to the index it must use (tests/fhir_server/bulk/
# test_readers.py checks the plans): the planner has no statistics to choose by.
# The batch of a type as of ``at``, in id order by the primary key (``+last_updated`` keeps the
# planner off the (type, last_updated) index); ``{where}``: _since/_until conditions.
SCAN = ("SELECT id, json FROM resource WHERE type=? AND id>? AND +last_updated<=? AND deleted=0{where} "
        "ORDER BY id LIMIT ?")
# The same rows joined into NDJSON by SQLite.
SCAN_JOINED = "SELECT count(*), max(id), CAST(group_concat(json, x'0a') || x'0a' AS BLOB) FROM ({scan})"
# Resources of a type changed after ``at`` within an id range ({bound}: "" or " AND id<=?").
CHANGED_IN_RANGE = ("SELECT id FROM resource INDEXED BY resource_type_updated WHERE type=? AND last_updated>? "
                    "AND id>?{bound}")
CHANGED = ("SELECT id FROM resource INDEXED BY resource_type_updated WHERE type=? AND last_updated>? AND id>? "
           "ORDER BY id LIMIT ?")
VERSION_AT = ("SELECT version, last_updated, deleted, json, method FROM history WHERE type=? AND id=? "
              "AND last_updated<=? ORDER BY version DESC LIMIT 1")
# Deletions after ``since`` of every type, by last_updated then seq (the keyset).
DELETIONS = ("SELECT seq, type, id, version, last_updated, method FROM history INDEXED BY history_updated "
             "WHERE last_updated>=? AND last_updated<=? AND (last_updated>? OR seq>?) AND deleted=1 "
             "ORDER BY last_updated, seq LIMIT ?")


class SQLiteReader(Reader):
    def __init__(self, store):
        super().__init__(store)
        self.conn = sqlite3.connect(Path(store.path).resolve().as_uri() + "?mode=ro", uri=True,
                                    isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA cache_size=-4096")  # a sequential read: the OS page cache does the work

    async def scan(self, type, after, count, at, since, until, with_ids=False, joined=False) -> Rows:
        return await asyncio.to_thread(self._scan, type, after, count, at, since, until, with_ids, joined)

    def _scan(self, type, after, count, at, since, until, with_ids, joined) -> Rows:
        where, args = "", [type, after or "", at]
        if since is not None:
            where += " AND +last_updated>?"
            args.append(since)
        if until is not None:
            where += " AND +last_updated<=?"
            args.append(until)
        select = SCAN.format(where=where)
        conn = self.conn
        conn.execute("BEGIN")
        try:
            data = None
            if joined and not with_ids:
                # The lines joined by SQLite itself: no Python object per row, and the GIL is free
                # meanwhile (the writer thread and the event loop run). Stored bodies are compact
                # JSON on one line (``write.py`` stores ``orjson.dumps`` output), so a newline
                # joins them into NDJSON as they are.
                n, last, data = conn.execute(SCAN_JOINED.format(scan=select), (*args, count)).fetchone()
                data, bodies, ids, last = data or b"", [], None, last or after
            else:
                rows = conn.execute(select, (*args, count)).fetchall()
                n, last = len(rows), rows[-1][0] if rows else after
                bodies = [r[1] for r in rows]
                ids = [r[0] for r in rows] if with_ids else None
            done = n < count
            # Changed after ``at`` (updated, deleted, created) within this batch's id range:
            # exported as the version current at ``at``, if any.
            bound, bargs = ("", ()) if done else (" AND id<=?", (last,))
            changed = [r[0] for r in conn.execute(CHANGED_IN_RANGE.format(bound=bound),
                                                  (type, at, after or "", *bargs))]
            for id, v in self._versions_at(type, changed, at).items():
                if wanted(v, since, until):
                    bodies.append(v.json)
                    if ids is not None:
                        ids.append(id)
        finally:
            conn.execute("COMMIT")
        size = sum(map(len, bodies))
        if data is not None:
            if bodies:
                data += b"".join(b + b"\n" for b in bodies)
            lines = n + len(bodies)
            return Rows([], None, n + len(changed), len(data), last, done, data, lines)
        return Rows(bodies, ids, n + len(changed), size, last, done)

    async def changed(self, type, at, position, count):
        return await asyncio.to_thread(self._changed, type, at, position, count)

    def _changed(self, type, at, position, count):
        rows = self.conn.execute(CHANGED, (type, at, position or "", count)).fetchall()
        ids = [r[0] for r in rows]
        return ids, (ids[-1] if ids else position), len(ids) < count

    async def versions_at(self, type, ids, at):
        return await asyncio.to_thread(self._versions_at, type, ids, at) if ids else {}

    def _versions_at(self, type: str, ids: list[str], at: str) -> dict[str, Stored]:
        out = {}
        for id in ids:
            row = self.conn.execute(VERSION_AT, (type, id, at)).fetchone()
            if row is not None:
                out[id] = Stored(type, id, row[0], row[1], bool(row[2]), row[3], row[4])
        return out

    async def deletions(self, types, since, at, position, count):
        return await asyncio.to_thread(self._deletions, types, since, at, position, count)

    def _deletions(self, types, since, at, position, count):
        # By the history_updated index (last_updated), then seq: what changed after ``since``,
        # whatever the type, is little next to the whole history.
        lu, seq = position or (since, 0)
        rows = self.conn.execute(DELETIONS, (lu, at, lu, seq, count)).fetchall()
        wanted_types = set(types)
        out = [Stored(r[1], r[2], r[3], r[4], True, b"", r[5]) for r in rows if r[4] > since and r[1] in wanted_types]
        done = len(rows) < count
        return out, ([rows[-1][4], rows[-1][0]] if rows else position), done

    def close(self) -> None:
        self.conn.close()
