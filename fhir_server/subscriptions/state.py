"""What notification delivery keeps between restarts, on the same backend as the FHIR data: a
SQLite file beside the embedded store, or collections of the MongoDB database.

- events: per Subscription, every event queued for it, numbered from 1 in the order the
  dispatcher saw them (``events-since-subscription-start``), kept for ``$events`` replay; the
  number of the last one delivered. Queueing is idempotent per (subscription, source): the
  dispatcher may queue an outbox entry again after a crash and no event is doubled.
- mail: e-mails to send (the participant notifications), idempotent per key, with their
  attempts and when to try next.
- lease: which server process dispatches and delivers (one at a time; the others stand by).
- tokens: websocket binding tokens, until they expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from fhir_server.storage.sidecar import SideDB


@dataclass(frozen=True, slots=True)
class Event:
    number: int
    topic: str
    focus: str  # "Type/id"
    version: int
    at: str  # the change's lastUpdated


@dataclass(frozen=True, slots=True)
class Mail:
    key: str
    to: str
    subject: str
    text: str
    attempts: int = 0


class NotifyState(Protocol):
    async def lease(self, holder: str, seconds: float) -> bool:
        """Take or renew the dispatcher lease; whether ``holder`` has it now."""
    async def add_events(self, sub: str, items: list[tuple[str, str, str, int, str]]) -> None:
        """Queue (source, topic, focus, version, at) events for ``sub``, each source at most once."""
    async def events(self, sub: str, since: int, until: int | None, limit: int) -> list[Event]:
        """Events numbered above ``since`` (and at most ``until``), oldest first."""
    async def counters(self, sub: str) -> tuple[int, int]:
        """(events since the subscription started, the last one delivered)."""
    async def delivered(self, sub: str, number: int) -> None: ...
    async def drop(self, sub: str) -> None: ...
    async def queue_mail(self, mails: list[Mail], now: float) -> None: ...
    async def due_mail(self, now: float, limit: int) -> list[Mail]: ...
    async def mail_sent(self, key: str) -> None: ...
    async def mail_retry(self, key: str, attempts: int, at: float, error: str) -> None: ...
    async def put_token(self, token: str, doc: dict, expires: float) -> None: ...
    async def get_token(self, token: str) -> dict | None: ...
    async def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS sub (id TEXT PRIMARY KEY, last INTEGER NOT NULL, delivered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sub_event (sub TEXT NOT NULL, number INTEGER NOT NULL, source TEXT NOT NULL,
  topic TEXT NOT NULL, focus TEXT NOT NULL, version INTEGER NOT NULL, at TEXT NOT NULL, PRIMARY KEY (sub, number));
CREATE UNIQUE INDEX IF NOT EXISTS sub_event_source ON sub_event (sub, source);
CREATE TABLE IF NOT EXISTS mail (key TEXT PRIMARY KEY, doc BLOB NOT NULL, attempts INTEGER NOT NULL,
  due REAL NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS mail_due ON mail (due);
CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS token (token TEXT PRIMARY KEY, doc BLOB NOT NULL, expires REAL NOT NULL);
"""


class SQLiteNotifyState:
    def __init__(self, path: Path):
        self._side = SideDB(path, SCHEMA)
        self._run = self._side.run

    async def lease(self, holder, seconds):
        def take(db):
            now = time.time()
            row = db.execute("SELECT holder, until FROM lease WHERE name='dispatcher'").fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            db.execute("INSERT OR REPLACE INTO lease VALUES ('dispatcher', ?, ?)", (holder, now + seconds))
            return True
        return await self._run(take, write=True)

    async def add_events(self, sub, items):
        def add(db):
            row = db.execute("SELECT last FROM sub WHERE id=?", (sub,)).fetchone()
            last = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO sub VALUES (?, 0, 0)", (sub,))
            for source, topic, focus, version, at in items:
                if db.execute("SELECT 1 FROM sub_event WHERE sub=? AND source=?", (sub, source)).fetchone():
                    continue
                last += 1
                db.execute("INSERT INTO sub_event VALUES (?,?,?,?,?,?,?)", (sub, last, source, topic, focus, version, at))
            db.execute("UPDATE sub SET last=? WHERE id=?", (last, sub))
        await self._run(add, write=True)

    async def events(self, sub, since, until, limit):
        rows = await self._run(lambda db: db.execute(
            "SELECT number, topic, focus, version, at FROM sub_event WHERE sub=? AND number>? AND number<=? "
            "ORDER BY number LIMIT ?", (sub, since, until if until is not None else 2**62, limit)).fetchall())
        return [Event(*r) for r in rows]

    async def counters(self, sub):
        row = await self._run(lambda db: db.execute("SELECT last, delivered FROM sub WHERE id=?", (sub,)).fetchone())
        return (row[0], row[1]) if row else (0, 0)

    async def delivered(self, sub, number):
        await self._run(lambda db: db.execute("UPDATE sub SET delivered=max(delivered, ?) WHERE id=?", (number, sub)))

    async def drop(self, sub):
        def drop(db):
            db.execute("DELETE FROM sub_event WHERE sub=?", (sub,))
            db.execute("DELETE FROM sub WHERE id=?", (sub,))
        await self._run(drop, write=True)

    async def queue_mail(self, mails, now):
        await self._run(lambda db: db.executemany(
            "INSERT OR IGNORE INTO mail VALUES (?,?,0,?,NULL)",
            [(m.key, orjson.dumps({"to": m.to, "subject": m.subject, "text": m.text}), now) for m in mails]), write=True)

    async def due_mail(self, now, limit):
        rows = await self._run(lambda db: db.execute(
            "SELECT key, doc, attempts FROM mail WHERE due<=? ORDER BY due LIMIT ?", (now, limit)).fetchall())
        return [Mail(r[0], **orjson.loads(r[1]), attempts=r[2]) for r in rows]

    async def mail_sent(self, key):
        await self._run(lambda db: db.execute("DELETE FROM mail WHERE key=?", (key,)))

    async def mail_retry(self, key, attempts, at, error):
        await self._run(lambda db: db.execute("UPDATE mail SET attempts=?, due=?, error=? WHERE key=?",
                                              (attempts, at, error, key)))

    async def put_token(self, token, doc, expires):
        def put(db):
            db.execute("DELETE FROM token WHERE expires<=?", (time.time(),))
            db.execute("INSERT OR REPLACE INTO token VALUES (?,?,?)", (token, orjson.dumps(doc), expires))
        await self._run(put, write=True)

    async def get_token(self, token):
        row = await self._run(lambda db: db.execute("SELECT doc FROM token WHERE token=? AND expires>?",
                                                    (token, time.time())).fetchone())
        return orjson.loads(row[0]) if row else None

    async def close(self):
        await self._side.close()


class MongoNotifyState:
    """Collections ``sub`` (counters), ``sub_event`` (``_id: "<sub>/<number>"``, unique
    ``(sub, source)``), ``mail``, ``lease`` and ``ws_token``. Queueing events runs in a
    transaction: the counter and the events it numbers are written together."""

    def __init__(self, db):
        self._client = db.client
        self._db = db
        self._ready = False

    async def _start(self):
        if self._ready:
            return
        from pymongo import IndexModel

        await self._db["sub_event"].create_indexes([
            IndexModel([("sub", 1), ("source", 1)], name="sub_source", unique=True),
            IndexModel([("sub", 1), ("n", 1)], name="sub_n")])
        await self._db["mail"].create_indexes([IndexModel([("due", 1)], name="due")])
        for name in ("sub", "lease", "ws_token"):
            await self._db[name].create_indexes([IndexModel([("x", 1)], name="x")])  # makes the collection
        self._ready = True

    async def lease(self, holder, seconds):
        from pymongo.errors import DuplicateKeyError

        await self._start()
        now = time.time()
        try:
            await self._db["lease"].update_one(
                {"_id": "dispatcher", "$or": [{"holder": holder}, {"until": {"$lte": now}}]},
                {"$set": {"holder": holder, "until": now + seconds}}, upsert=True)
            return True
        except DuplicateKeyError:  # held by another process: the upsert collided with its document
            return False

    async def add_events(self, sub, items):
        await self._start()
        async with self._client.start_session() as session:
            async with await session.start_transaction():
                known = {d["source"] async for d in self._db["sub_event"].find(
                    {"sub": sub, "source": {"$in": [i[0] for i in items]}}, {"source": 1}, session=session)}
                fresh = [i for i in items if i[0] not in known]
                if not fresh:
                    return
                doc = await self._db["sub"].find_one_and_update(
                    {"_id": sub}, {"$inc": {"last": len(fresh)}, "$setOnInsert": {"delivered": 0}},
                    upsert=True, return_document=True, session=session)
                first = doc["last"] - len(fresh) + 1
                await self._db["sub_event"].insert_many([
                    {"_id": f"{sub}/{first + k}", "sub": sub, "n": first + k, "source": source, "topic": topic,
                     "focus": focus, "v": version, "at": at}
                    for k, (source, topic, focus, version, at) in enumerate(fresh)], session=session)

    async def events(self, sub, since, until, limit):
        await self._start()
        cond = {"$gt": since} if until is None else {"$gt": since, "$lte": until}
        found = self._db["sub_event"].find({"sub": sub, "n": cond}).sort("n", 1).limit(limit)
        return [Event(d["n"], d["topic"], d["focus"], d["v"], d["at"]) async for d in found]

    async def counters(self, sub):
        await self._start()
        doc = await self._db["sub"].find_one({"_id": sub})
        return (doc["last"], doc.get("delivered", 0)) if doc else (0, 0)

    async def delivered(self, sub, number):
        await self._db["sub"].update_one({"_id": sub}, {"$max": {"delivered": number}})

    async def drop(self, sub):
        await self._db["sub_event"].delete_many({"sub": sub})
        await self._db["sub"].delete_one({"_id": sub})

    async def queue_mail(self, mails, now):
        from pymongo import UpdateOne

        await self._start()
        if mails:
            await self._db["mail"].bulk_write([UpdateOne(
                {"_id": m.key}, {"$setOnInsert": {"to": m.to, "subject": m.subject, "text": m.text, "attempts": 0,
                                                  "due": now}}, upsert=True) for m in mails], ordered=False)

    async def due_mail(self, now, limit):
        await self._start()
        found = self._db["mail"].find({"due": {"$lte": now}}).sort("due", 1).limit(limit)
        return [Mail(d["_id"], d["to"], d["subject"], d["text"], d["attempts"]) async for d in found]

    async def mail_sent(self, key):
        await self._db["mail"].delete_one({"_id": key})

    async def mail_retry(self, key, attempts, at, error):
        await self._db["mail"].update_one({"_id": key}, {"$set": {"attempts": attempts, "due": at, "error": error}})

    async def put_token(self, token, doc, expires):
        await self._start()
        await self._db["ws_token"].delete_many({"expires": {"$lte": time.time()}})
        await self._db["ws_token"].replace_one({"_id": token}, {"doc": doc, "expires": expires}, upsert=True)

    async def get_token(self, token):
        found = await self._db["ws_token"].find_one({"_id": token, "expires": {"$gt": time.time()}})
        return found["doc"] if found else None

    async def close(self):
        return None
