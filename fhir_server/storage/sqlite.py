"""The embedded store: stdlib sqlite3 in WAL mode.

Reads run on the event loop's thread through one read connection: a primary-key lookup takes
microseconds, far less than a thread hop; recently read current versions are kept in memory,
forgotten when this process commits a new version and when another process writes the file. Writes go to one writer thread that drains its queue
and commits everything waiting in one SQLite transaction (group commit), each submission inside
its own SAVEPOINT so one failing submission never affects another. ``synchronous=FULL`` makes
every acknowledged commit survive a kill -9 or power loss.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

import orjson

from fhir_server.errors import invalid
from fhir_server.search.extract import extract
from fhir_server.search.plan import Query
from fhir_server.storage import sqlite_search
from fhir_server.storage.cursor import decode, page_cursors
from fhir_server.storage.port import (NOTIFIED_TYPES, RECORD_TYPES, Change, Guard, HistoryPage, SearchPage, Stored,
                                     VersionConflict, Write)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS resource (
  type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL,
  deleted INTEGER NOT NULL, json BLOB NOT NULL, PRIMARY KEY (type, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (type, last_updated);
CREATE TABLE IF NOT EXISTS history (
  seq INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
  last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, method TEXT NOT NULL, json BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS history_version ON history (type, id, version);
CREATE INDEX IF NOT EXISTS history_type_seq ON history (type, seq);
CREATE INDEX IF NOT EXISTS history_updated ON history (last_updated);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
  at TEXT NOT NULL);
""" + sqlite_search.INDEX_SCHEMA

_STOP = object()
CURRENT_CACHE_SIZE = 50_000
WAL_KEEP_BYTES = 64 << 20  # the write-ahead log is started over past this size
WAL_RESTART_WAIT_MS = 200  # how long a restart waits for readers of older snapshots
BUSY_TIMEOUT_S = 30
CHECK_OTHERS = 0.1  # seconds: how stale a read may be of what another process wrote


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older store's indexes to ``INDEX_VERSION`` (dropped here, built by the schema)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name='resource'").fetchone()
    if exists and version < sqlite_search.INDEX_VERSION:
        log.info("rebuilding search indexes (version %d -> %d); this can take a while on a large store",
                 version, sqlite_search.INDEX_VERSION)
        for name in sqlite_search.REBUILT_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")


class SQLiteStore:
    def __init__(self, path: Path | str):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = self._connect()
        _migrate(writer)
        writer.executescript(SCHEMA)
        writer.execute(f"PRAGMA user_version={sqlite_search.INDEX_VERSION}")
        self._reader = self._connect()
        # Current versions recently read, served without a lookup (reads are the hot path).
        self._current: dict[tuple[str, str], Stored] = {}
        self._checked_at, self._data_version = 0.0, None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, args=(writer,), name="sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")  # a restarted log is cut back to this
        return conn

    # --- reads -------------------------------------------------------------------------------

    async def read(self, type: str, id: str) -> Stored | None:
        self._notice_other_writers()
        hit = self._current.get((type, id))
        if hit is not None:
            return hit
        row = self._reader.execute(
            "SELECT version, last_updated, deleted, json FROM resource WHERE type=? AND id=?", (type, id)
        ).fetchone()
        if row is None:
            return None
        stored = Stored(type, id, row[0], row[1], bool(row[2]), row[3])
        if len(self._current) >= CURRENT_CACHE_SIZE:
            self._current.clear()
        self._current[(type, id)] = stored
        return stored

    def _notice_other_writers(self) -> None:
        """Another process may write the same file (``telemed load --data`` beside a server):
        SQLite's data_version says so. Checked at most every CHECK_OTHERS seconds, since the
        check costs as much as a lookup; this process's own commits invalidate exactly."""
        now = time.monotonic()
        if now - self._checked_at < CHECK_OTHERS:
            return
        self._checked_at = now
        version = self._reader.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._current.clear()

    def _forget(self, writes: list[Write]) -> None:
        for w in writes:
            self._current.pop((w.type, w.id), None)

    async def vread(self, type: str, id: str, version: int) -> Stored | None:
        row = self._reader.execute(
            "SELECT last_updated, deleted, json, method FROM history WHERE type=? AND id=? AND version=?",
            (type, id, version),
        ).fetchone()
        if row is None:
            return None
        return Stored(type, id, version, row[0], bool(row[1]), row[2], row[3])

    async def history(self, type, id, *, since, at, count, cursor) -> HistoryPage:
        where, args = [], []
        if type:
            where.append("type=?")
            args.append(type)
        if id:
            where.append("id=?")
            args.append(id)
        if since:
            where.append("last_updated>=?")
            args.append(since)
        if at:
            where.append(
                "last_updated<=? AND version=(SELECT max(h2.version) FROM history h2 "
                "WHERE h2.type=history.type AND h2.id=history.id AND h2.last_updated<=?)"
            )
            args += [at, at]
        pos = decode(cursor) if cursor else None
        backward = pos is not None and pos.backward
        if pos is not None:  # newest first: seq descending; backward, towards the newest
            if len(pos.key) != 1 or not isinstance(pos.key[0], int):
                raise invalid("The paging cursor does not fit this history; start again", "_cursor")
            where.append(f"seq{'>' if backward else '<'}{'=' if pos.inclusive else ''}?")
            args.append(pos.key[0])
        sql = "SELECT seq, type, id, version, last_updated, deleted, json, method FROM history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'ASC' if backward else 'DESC'} LIMIT ?"
        rows = self._reader.execute(sql, (*args, count + 1)).fetchall() if count > 0 else []
        more = len(rows) > count
        rows = rows[:count][::-1] if backward else rows[:count]
        entries = [Stored(r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]
        nxt, prev = page_cursors(pos, rows, lambda r: [r[0]], more) if count > 0 else (None, None)
        return HistoryPage(entries, nxt, prev)

    async def search(self, query: Query, *, count: int, cursor: str | None, total: bool) -> SearchPage:
        pos = decode(cursor) if cursor else None
        backward = pos is not None and pos.backward
        walk = False
        if count > 0 and sqlite_search.walkable(query):  # many candidates: walk the sort index instead
            csql, cargs = sqlite_search.compile_candidate_count(query, sqlite_search.WALK_MIN)
            walk = self._reader.execute(csql, cargs).fetchone()[0] >= sqlite_search.WALK_MIN
        sql, args, keyfn = sqlite_search.compile_page(query, count + 1, pos.key if pos else None, backward=backward,
                                                      inclusive=pos is not None and pos.inclusive, walk_index=walk)
        rows = self._reader.execute(sql, args).fetchall() if count > 0 else []
        more = len(rows) > count
        rows = rows[:count][::-1] if backward else rows[:count]
        entries = [Stored(query.type, r[0], r[1], r[2], False, r[3]) for r in rows]
        n = None
        if total:
            csql, cargs = sqlite_search.compile_count(query)
            n = self._reader.execute(csql, cargs).fetchone()[0]
        nxt, prev = page_cursors(pos, rows, keyfn, more) if count > 0 else (None, None)
        return SearchPage(entries, n, nxt, prev)

    async def read_many(self, type: str, ids: list[str], deleted: bool = False) -> list[Stored]:
        out = []
        live = "" if deleted else " AND deleted=0"
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._reader.execute(
                f"SELECT id, version, last_updated, deleted, json FROM resource WHERE type=?{live} "
                f"AND id IN ({','.join('?' * len(chunk))})", (type, *chunk)).fetchall()
            out += [Stored(type, r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]
        return out

    async def search_ids(self, query: Query, limit: int) -> list[str]:
        sql, args = sqlite_search.compile_ids(query, limit)
        return [r[0] for r in self._reader.execute(sql, args)]

    async def distinct_references(self, query: Query, param: str | None, limit: int) -> list[str]:
        sql, args = sqlite_search.compile_distinct_references(query, param, limit)
        return [r[0] for r in self._reader.execute(sql, args)]

    async def probes_referrers(self, query: Query, bound: int) -> bool:
        if not sqlite_search.probeable(query):
            return False
        at_least = min(bound, sqlite_search.PROBE_MIN)
        csql, cargs = sqlite_search.compile_candidate_count(query, at_least)
        return self._reader.execute(csql, cargs).fetchone()[0] >= at_least

    async def referrers(self, targets: list[str], limit: int) -> list[str]:
        if not targets:
            return []
        marks = ",".join("?" * len(targets))
        rows = self._reader.execute(
            f"SELECT DISTINCT r.type, r.id FROM idx_reference x JOIN resource r ON r.type=x.type AND r.id=x.id "
            f"WHERE x.target IN ({marks}) AND r.deleted=0 AND (r.type || '/' || r.id) NOT IN ({marks}) "
            f"AND x.type NOT IN ({','.join('?' * len(RECORD_TYPES))}) LIMIT ?",
            (*targets, *targets, *RECORD_TYPES, limit),
        ).fetchall()
        return [f"{t}/{i}" for t, i in rows]

    async def scan(self, type: str, after: str | None, count: int) -> list[Stored]:
        rows = self._reader.execute(
            "SELECT id, version, last_updated, deleted, json FROM resource WHERE type=? AND id>? ORDER BY id LIMIT ?",
            (type, after or "", count)).fetchall()
        return [Stored(type, r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    async def reindex(self, type: str, after: str | None, count: int) -> str | None:
        rows = self._reader.execute(
            "SELECT id, version, json FROM resource WHERE type=? AND id>? AND deleted=0 ORDER BY id LIMIT ?",
            (type, after or "", count)).fetchall()
        if not rows:
            return None
        items = [(id, version, extract(orjson.loads(body))) for id, version, body in rows]

        def rebuild(conn: sqlite3.Connection) -> None:
            for id, version, index in items:
                row = conn.execute("SELECT version FROM resource WHERE type=? AND id=?", (type, id)).fetchone()
                if row is not None and row[0] == version:  # unchanged since it was read
                    sqlite_search.delete_index(conn, type, id)
                    sqlite_search.insert_index(conn, type, id, index)

        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((rebuild, [], fut, loop))
        await fut
        return rows[-1][0]

    async def changes(self, limit: int) -> list[Change]:
        rows = self._reader.execute("SELECT seq, type, id, version, at FROM outbox ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [Change(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def forget_changes(self, keys: list[str]) -> None:
        """In the writer's next transaction: one connection writes, so the WAL can restart after
        each complete checkpoint (a second writing connection kept it from ever restarting: a
        million-resource load grew it to tens of GB)."""
        if not keys:
            return
        seqs = [(int(k),) for k in keys]
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((lambda conn: conn.executemany("DELETE FROM outbox WHERE seq=?", seqs), [], fut, loop))
        await fut

    # --- writes ------------------------------------------------------------------------------

    async def commit(self, writes: list[Write], guards: list[Guard] = ()) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((writes, list(guards), fut, loop))
        await fut

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                conn.close()
                return
            batch = [item]
            while len(batch) < 256:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            try:
                results = self._commit_batch(conn, batch)
            except Exception:  # noqa: BLE001 - an unexpected failure: each submission on its own
                log.exception("sqlite group commit failed; committing its submissions one by one")
                results = []
                for item in batch:
                    try:
                        results += self._commit_batch(conn, [item])
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting coroutine
                        results.append(exc)
            self._keep_wal_small(conn)
            for (writes, _g, fut, loop), res in zip(batch, results):
                if res is None and not callable(writes):  # committed: cached current versions go first
                    loop.call_soon_threadsafe(self._forget, writes)
                loop.call_soon_threadsafe(_settle, fut, res)

    def _keep_wal_small(self, conn: sqlite3.Connection) -> None:
        """Start the write-ahead log over once it passes ``WAL_KEEP_BYTES``. The automatic
        checkpoint after a commit rarely completes while readers are busy (each holds the
        snapshot it began with), and the log restarts only after a complete one: under steady
        reads it grew with every write (tens of GB over a million-resource load, as much as the
        data written). A RESTART checkpoint waits for the readers of older snapshots to finish,
        a few milliseconds; a long one (a bulk export's snapshot) is not waited for."""
        if self.path == ":memory:":
            return
        try:
            if os.path.getsize(self.path + "-wal") <= WAL_KEEP_BYTES:
                return
        except OSError:
            return
        conn.execute(f"PRAGMA busy_timeout={WAL_RESTART_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.OperationalError:
            pass  # busy: a later commit tries again
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")

    def _commit_batch(self, conn: sqlite3.Connection, batch: list) -> list[Exception | None]:
        """One transaction for the whole batch. A submission whose expectations fail is skipped
        before it writes anything (so no savepoints are needed); any other error rolls it all back."""
        results: list[Exception | None] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for writes, guards, _fut, _loop in batch:
                if callable(writes):  # maintenance work in the writer's transaction (reindex)
                    writes(conn)
                    results.append(None)
                    continue
                try:
                    self._check(conn, writes, guards)
                except VersionConflict as exc:
                    results.append(exc)
                    continue
                self._apply(conn, writes)
                results.append(None)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _check(self, conn: sqlite3.Connection, writes: list[Write], guards: list[Guard]) -> None:
        for guard in guards:
            sql, args = sqlite_search.compile_ids(guard.query, 1000)
            ids = frozenset(r[0] for r in conn.execute(sql, args))
            if ids != guard.ids:
                raise VersionConflict(f"matches of {guard.query} changed")
        for w in writes:
            row = conn.execute("SELECT version FROM resource WHERE type=? AND id=?", (w.type, w.id)).fetchone()
            current = row[0] if row else 0
            if current != w.expect:
                raise VersionConflict(f"{w.type}/{w.id} is at version {current}, expected {w.expect}")

    def _apply(self, conn: sqlite3.Connection, writes: list[Write]) -> None:
        for w in writes:
            conn.execute(
                "INSERT OR REPLACE INTO resource (type, id, version, last_updated, deleted, json) VALUES (?,?,?,?,?,?)",
                (w.type, w.id, w.version, w.last_updated, int(w.deleted), w.json),
            )
            conn.execute(
                "INSERT INTO history (type, id, version, last_updated, deleted, method, json) VALUES (?,?,?,?,?,?,?)",
                (w.type, w.id, w.version, w.last_updated, int(w.deleted), w.method, w.json),
            )
            if w.type in NOTIFIED_TYPES:
                conn.execute("INSERT INTO outbox (type, id, version, at) VALUES (?,?,?,?)",
                             (w.type, w.id, w.version, w.last_updated))
            if w.expect:
                sqlite_search.delete_index(conn, w.type, w.id)
            if w.index is not None and not w.deleted:
                sqlite_search.insert_index(conn, w.type, w.id, w.index)

    async def close(self) -> None:
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._reader.close()


def _settle(fut: asyncio.Future, res: Exception | None) -> None:
    if fut.done():
        return
    if res is None:
        fut.set_result(None)
    else:
        fut.set_exception(res)
