"""The authority's small state: clients, users, one-time codes, refresh tokens, launch
contexts, revoked token ids. A keyed document store with expiry, on the same backend as the
FHIR data (so several server processes share it): a SQLite file beside the embedded store, or
the ``auth`` collection of the MongoDB database.

Expired rows are never returned, and are deleted by ``purge`` (every ``PURGE_EVERY`` seconds
while the server runs). Kinds in use: ``client``, ``user``, ``code``, ``refresh``, ``grant``, ``launch``, ``revoked``, ``assertion``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import orjson

from fhir_server.storage.sidecar import SideDB

PURGE_EVERY = 600.0


class AuthState(Protocol):
    async def put(self, kind: str, key: str, doc: dict, expires: float | None = None) -> None: ...
    async def add(self, kind: str, key: str, doc: dict, expires: float | None = None) -> bool:
        """Insert unless the key exists (and has not expired); whether it was inserted."""
    async def get(self, kind: str, key: str) -> dict | None: ...
    async def take(self, kind: str, key: str) -> dict | None:
        """Get and delete in one step: a one-time value is taken by exactly one caller."""
    async def delete(self, kind: str, key: str) -> bool: ...
    async def list(self, kind: str) -> list[dict]: ...
    async def purge(self) -> int:
        """Delete every expired row; how many."""
    async def close(self) -> None: ...


class SQLiteAuthState:
    def __init__(self, path: Path):
        self._side = SideDB(path, "CREATE TABLE IF NOT EXISTS auth (kind TEXT NOT NULL, key TEXT NOT NULL, "
                                  "doc BLOB NOT NULL, expires REAL, PRIMARY KEY (kind, key)) WITHOUT ROWID")
        self._run = self._side.run

    async def put(self, kind, key, doc, expires=None):
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO auth VALUES (?,?,?,?)",
                                              (kind, key, orjson.dumps(doc), expires)))

    async def add(self, kind, key, doc, expires=None):
        def do(db):
            db.execute("DELETE FROM auth WHERE kind=? AND key=? AND expires IS NOT NULL AND expires<=?",
                       (kind, key, time.time()))
            return db.execute("INSERT OR IGNORE INTO auth VALUES (?,?,?,?)",
                              (kind, key, orjson.dumps(doc), expires)).rowcount == 1
        return await self._run(do, write=True)

    async def get(self, kind, key):
        row = await self._run(lambda db: db.execute(
            "SELECT doc FROM auth WHERE kind=? AND key=? AND (expires IS NULL OR expires>?)",
            (kind, key, time.time())).fetchone())
        return orjson.loads(row[0]) if row else None

    async def take(self, kind, key):
        row = await self._run(lambda db: db.execute(
            "DELETE FROM auth WHERE kind=? AND key=? RETURNING doc, expires", (kind, key)).fetchone())
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return orjson.loads(row[0])

    async def delete(self, kind, key):
        cur = await self._run(lambda db: db.execute("DELETE FROM auth WHERE kind=? AND key=?", (kind, key)))
        return cur.rowcount > 0

    async def list(self, kind):
        rows = await self._run(lambda db: db.execute(
            "SELECT doc FROM auth WHERE kind=? AND (expires IS NULL OR expires>?) ORDER BY key",
            (kind, time.time())).fetchall())
        return [orjson.loads(r[0]) for r in rows]

    async def purge(self):
        cur = await self._run(lambda db: db.execute("DELETE FROM auth WHERE expires IS NOT NULL AND expires<=?",
                                                    (time.time(),)))
        return cur.rowcount

    async def close(self):
        await self._side.close()


class MongoAuthState:
    def __init__(self, db):
        self._c = db["auth"]

    @staticmethod
    def _id(kind: str, key: str) -> str:
        return f"{kind}\x1f{key}"

    def _live(self, kind: str, key: str) -> dict:
        return {"_id": self._id(kind, key), "$or": [{"expires": None}, {"expires": {"$gt": time.time()}}]}

    async def put(self, kind, key, doc, expires=None):
        await self._c.replace_one({"_id": self._id(kind, key)},
                                  {"kind": kind, "doc": doc, "expires": expires}, upsert=True)

    async def add(self, kind, key, doc, expires=None):
        from pymongo.errors import DuplicateKeyError

        await self._c.delete_one({"_id": self._id(kind, key), "expires": {"$ne": None, "$lte": time.time()}})
        try:
            await self._c.insert_one({"_id": self._id(kind, key), "kind": kind, "doc": doc, "expires": expires})
            return True
        except DuplicateKeyError:
            return False

    async def get(self, kind, key):
        found = await self._c.find_one(self._live(kind, key))
        return found["doc"] if found else None

    async def take(self, kind, key):
        found = await self._c.find_one_and_delete({"_id": self._id(kind, key)})
        if found is None or (found.get("expires") is not None and found["expires"] <= time.time()):
            return None
        return found["doc"]

    async def delete(self, kind, key):
        return (await self._c.delete_one({"_id": self._id(kind, key)})).deleted_count > 0

    async def list(self, kind):
        cursor = self._c.find({"kind": kind, "$or": [{"expires": None}, {"expires": {"$gt": time.time()}}]}).sort("_id")
        return [d["doc"] async for d in cursor]

    async def purge(self):
        return (await self._c.delete_many({"expires": {"$ne": None, "$lte": time.time()}})).deleted_count

    async def close(self):
        return None
