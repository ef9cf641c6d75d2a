"""The MongoDB store: PyMongo's async API, one multi-document transaction per ``commit``.

Collections (database: the URI's default database, else ``telemed``):

- ``<Type>`` (one per resource type), the current version of each resource::

      {_id: id, v: version, lu: lastUpdated, d: deleted, r: <stored JSON bytes>, s: {code: [...]},
       k: {code: {e: 1, lo, hi}}}

  ``r`` is BSON binary holding the stored bytes, so reads return them untouched. ``lu`` is the
  FHIR instant string of ``values.py``'s fixed form (string order is time order, microseconds
  kept: a BSON datetime would round them to milliseconds). ``s`` holds the search index values
  (``mongo_search``) and ``k`` the sort keys of ``_sort`` for its date, string, number and
  quantity parameters (lowest and highest value per parameter; tokens, references and uris are
  sorted by keys computed from ``s``); deleted versions have neither. Indexes, created the first time this process
  writes the type: ``(lu, _id)`` partial on ``d: false`` (``_lastUpdated``, its sort,
  unfiltered searches) and, for the commonly searched parameters the type has (``INDEXED_PARAMS``),
  ``(s.<code>, _id)``, which also gives the default ``_id`` order for the keyset (dates:
  ``s.<code>.lo`` and ``s.<code>.hi``; composites: ``(s.<code>.c0, _id)``, their first
  component). Values are arrays, so no index may hold two ``s`` fields (MongoDB refuses
  compound indexes over parallel arrays). The common sorts (``SORT_PARAMS``,
  both directions) have ``(k.<code>.hi desc, _id desc)`` (``sort_-<code>``) and ``(k.<code>.e
  desc, k.<code>.lo, _id)`` (``sort_<code>``); ``k`` values are scalars, so a reference index
  can carry a sort too: ``(s.patient, k.date.hi desc, _id desc)`` (``patient_sort_-date``) for
  a patient's newest first.
- ``history``, every version: ``{_id: "Type/id/v", t, i, v, lu, d, m: method, r, o}``. Newest
  first is ``(lu, o, _id)`` descending, ``o`` being the write's position in its commit (later
  writes of one commit come first, as in SQLite's ``seq``); the keyset cursor is that triple
  (a previous page reads it ascending from its first entry).
  There is no global sequence number: a counter document would be written by every commit and
  so make all concurrent commits conflict. Indexes ``(lu, o, _id)``, ``(t, lu, o, _id)``,
  ``(t, i, lu, o, _id)``.
- ``refs``: ``{_id: "Type/id", x: [reference targets]}`` for every current, not deleted resource
  with references, index on ``x``: ``referrers`` is one indexed query, whatever the type.
- ``outbox``: ``{_id: "Type/id/v", t, i, v, lu, o}`` for every version of a ``NOTIFIED_TYPES``
  resource, inserted in its commit; read oldest first by ``(lu, o, _id)`` (an entry whose
  transaction commits late is still read, on the next round: entries are deleted once taken,
  never skipped by a position) and deleted by ``forget_changes``.
- ``locks``: ``{_id: sha256(str(guard query)), n}``, incremented by every commit that carries a
  guard, so two commits guarded by the same query write the same document and MongoDB lets at
  most one of them commit (the other gets a write conflict: ``VersionConflict``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from itertools import groupby

import orjson
from pymongo import AsyncMongoClient, DeleteOne, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import invalid
from fhir_server.search.extract import extract
from fhir_server.search.params import params_for
from fhir_server.search.plan import Query
from fhir_server.storage import mongo_search
from fhir_server.storage.cursor import decode, page_cursors
from fhir_server.storage.port import (NOTIFIED_TYPES, RECORD_TYPES, Change, Guard, HistoryPage, SearchPage, Stored,
                                     VersionConflict, Write)

# Parameters that get an index on every type that has them (dates: lo and hi).
INDEXED_PARAMS = (
    "identifier", "patient", "subject", "encounter", "code", "status", "category", "date",
    "authored-on", "birthdate", "family", "given", "name", "owner", "requester", "performer",
    "based-on", "intent", "url", "code-value-quantity", "component-code-value-quantity",
)  # fmt: skip
# Parameters whose ``_sort`` (ascending and descending) has an index on every type that has them.
SORT_PARAMS = ("date", "authored-on", "birthdate")
# (reference, date) pairs with an index for "this patient's, newest first".
REFERENCE_SORTS = (("patient", "date"), ("subject", "date"))
GUARD_LIMIT = 1000
_CURRENT = {"v": 1, "lu": 1, "d": 1, "r": 1}
_HISTORY_ORDER = [("lu", -1), ("o", -1), ("_id", -1)]


class MongoStore:
    def __init__(self, uri: str):
        self._client: AsyncMongoClient = AsyncMongoClient(uri)
        self.db = self._client.get_default_database(default="telemed")
        self._history = self.db["history"]
        self._refs = self.db["refs"]
        self._locks = self.db["locks"]
        self._outbox = self.db["outbox"]
        self._ready: set[str] = set()  # types (and "" for the shared collections) with indexes

    async def start(self) -> None:
        """Create the shared collections and indexes (idempotent)."""
        await self._history.create_indexes([
            IndexModel(_HISTORY_ORDER, name="lu_o_id"),
            IndexModel([("t", 1), *_HISTORY_ORDER], name="t_lu_o_id"),
            IndexModel([("t", 1), ("i", 1), *_HISTORY_ORDER], name="t_i_lu_o_id"),
        ])  # fmt: skip
        await self._refs.create_indexes([IndexModel([("x", 1)], name="x")])
        await self._outbox.create_indexes([IndexModel([("lu", 1), ("o", 1), ("_id", 1)], name="lu_o_id")])
        try:
            await self.db.create_collection("locks")
        except CollectionInvalid:
            pass  # exists
        except OperationFailure as exc:
            if exc.code != 48:  # NamespaceExists: another process made it just now
                raise
        self._ready.add("")

    async def _ensure(self, type: str) -> None:
        """Indexes of ``type``'s collection, before its first write (collections cannot be made
        inside a snapshot transaction)."""
        if "" not in self._ready:
            await self.start()
        if type in self._ready:
            return
        models = [IndexModel([("lu", 1), ("_id", 1)], name="lu_id", partialFilterExpression={"d": False})]
        params = params_for(type)
        for code in INDEXED_PARAMS:
            p = params.get(code)
            if p is None:
                continue
            if p.type == "date":
                models += [IndexModel([(f"s.{code}.lo", 1)], name=f"{code}.lo"),
                           IndexModel([(f"s.{code}.hi", 1)], name=f"{code}.hi")]  # fmt: skip
            elif p.type == "composite":  # the first component: the $elemMatch's equality on it
                models.append(IndexModel([(f"s.{code}.c0", 1), ("_id", 1)], name=f"{code}_id"))
            else:
                models.append(IndexModel([(f"s.{code}", 1), ("_id", 1)], name=f"{code}_id"))
        for code in SORT_PARAMS:
            if code in params:
                models += [IndexModel(mongo_search.sort_index(type, code, True), name=f"sort_-{code}"),
                           IndexModel(mongo_search.sort_index(type, code, False), name=f"sort_{code}")]  # fmt: skip
        for ref, code in REFERENCE_SORTS:
            if ref in params and code in params:
                models.append(IndexModel([(f"s.{ref}", 1), *mongo_search.sort_index(type, code, True)],
                                         name=f"{ref}_sort_-{code}"))  # fmt: skip
        await self._coll(type).create_indexes(models)
        self._ready.add(type)

    def _coll(self, type: str):
        if not (type[:1].isupper() and type.isalnum()):
            raise ValueError(f"not a resource type: {type!r}")
        return self.db[type]

    # --- reads -------------------------------------------------------------------------------

    async def read(self, type: str, id: str) -> Stored | None:
        doc = await self._coll(type).find_one({"_id": id}, _CURRENT)
        if doc is None:
            return None
        return Stored(type, id, doc["v"], doc["lu"], doc["d"], doc["r"])

    async def vread(self, type: str, id: str, version: int) -> Stored | None:
        doc = await self._history.find_one({"_id": f"{type}/{id}/{version}"})
        return None if doc is None else _history_entry(doc)

    async def history(self, type, id, *, since, at, count, cursor) -> HistoryPage:
        base: dict = {}
        if type:
            base["t"] = type
        if id:
            base["i"] = id
        pos = decode(cursor) if cursor else None
        if pos is not None and len(pos.key) != 3:
            raise invalid("The paging cursor does not fit this history; start again", "_cursor")
        backward = pos is not None and pos.backward
        order = [(f, 1 if backward else -1) for f, _ in _HISTORY_ORDER]  # backward: towards the newest
        page: list[dict] = []
        if count > 0:
            filters = [{"lu": {"$gte": since}}] if since else []
            if pos is not None:
                keys = [(f, d < 0) for f, d in order]
                filters.append(mongo_search.keyset_after(keys, pos.key, pos.inclusive))
            if at:
                # The version current at ``at`` of each resource: the newest with lu <= at.
                pipeline = [
                    {"$match": {**base, "lu": {"$lte": at}}},
                    {"$sort": {"t": 1, "i": 1, "v": -1}},
                    {"$group": {"_id": {"t": "$t", "i": "$i"}, "doc": {"$first": "$$ROOT"}}},
                    {"$replaceRoot": {"newRoot": "$doc"}},
                    {"$match": mongo_search.and_(filters)},
                    {"$sort": dict(order)},
                    {"$limit": count + 1},
                ]
                page = await (await self._history.aggregate(pipeline, allowDiskUse=True)).to_list()
            else:
                filt = mongo_search.and_([base, *filters])
                page = await self._history.find(filt).sort(order).limit(count + 1).to_list()
        more = len(page) > count
        page = page[:count][::-1] if backward else page[:count]
        nxt, prev = page_cursors(pos, page, _history_key, more) if count > 0 else (None, None)
        return HistoryPage([_history_entry(d) for d in page], nxt, prev)

    async def search(self, query: Query, *, count: int, cursor: str | None, total: bool) -> SearchPage:
        pos = decode(cursor) if cursor else None
        backward = pos is not None and pos.backward
        page = mongo_search.compile_page(query, pos.key if pos else None, backward=backward,
                                         inclusive=pos is not None and pos.inclusive)
        coll = self._coll(query.type)

        async def docs() -> list[dict]:
            if count <= 0:
                return []
            if page.computed:  # sorted by a key computed from ``s``: an aggregation
                return await (await coll.aggregate(page.pipeline(count + 1), allowDiskUse=True)).to_list()
            return await coll.find(page.filter, page.projection).sort(page.sort).limit(count + 1).to_list()

        async def count_all() -> int | None:
            return await coll.count_documents(page.match) if total else None

        found, n = await asyncio.gather(docs(), count_all())
        more = len(found) > count
        found = found[:count][::-1] if backward else found[:count]
        entries = [Stored(query.type, d["_id"], d["v"], d["lu"], False, d["r"]) for d in found]
        nxt, prev = page_cursors(pos, found, page.key, more) if count > 0 else (None, None)
        return SearchPage(entries, n, nxt, prev)

    async def explain(self, query: Query, count: int = 50) -> dict:
        """The server's query plan for the first page of ``query`` (tests, diagnostics)."""
        page = mongo_search.compile_page(query, None)
        if page.computed:
            return await self.db.command("aggregate", query.type, pipeline=page.pipeline(count + 1), explain=True)
        cursor = self._coll(query.type).find(page.filter, page.projection).sort(page.sort).limit(count + 1)
        return await cursor.explain()

    async def read_many(self, type: str, ids: list[str], deleted: bool = False) -> list[Stored]:
        if not ids:
            return []
        filt = {"_id": {"$in": list(dict.fromkeys(ids))}, **({} if deleted else {"d": False})}
        found = self._coll(type).find(filt, _CURRENT)
        return [Stored(type, d["_id"], d["v"], d["lu"], bool(d["d"]), d["r"]) async for d in found]

    async def search_ids(self, query: Query, limit: int) -> list[str]:
        if limit <= 0:
            return []
        found = self._coll(query.type).find(mongo_search.compile_filter(query), {"_id": 1}).limit(limit)
        return [d["_id"] async for d in found]

    async def distinct_references(self, query: Query, param: str | None, limit: int) -> list[str]:
        """One streamed query projecting only the reference values (``s.<param>``, or those of
        every reference parameter of the type: what ``refs.x`` holds for them), read until
        ``limit`` distinct targets are found: no server-side ``$group``, which would have to see
        every match first."""
        if limit <= 0:
            return []
        if param is not None:
            codes = [param]
        else:
            codes = [c for c, p in params_for(query.type).items() if p.type == "reference"]
        if not codes:
            return []
        # No "$exists" condition: it could tempt the planner into a whole-index scan, and a
        # match without references costs only its _id here.
        filt = mongo_search.compile_filter(query)
        found: dict[str, None] = {}
        cursor = self._coll(query.type).find(filt, {"_id": 0, **{f"s.{c}": 1 for c in codes}}).batch_size(1000)
        async with cursor:
            async for doc in cursor:
                for code in codes:
                    for target in doc.get("s", {}).get(code, ()):
                        found[target] = None
                        if len(found) >= limit:
                            return list(found)
        return list(found)

    async def probes_referrers(self, query: Query, bound: int) -> bool:
        return False  # a find filter cannot probe per document: _has comes as the referenced ids

    async def referrers(self, targets: list[str], limit: int) -> list[str]:
        if not targets:
            return []
        exclude = set(targets)
        # Without a second condition the query stays a plain $in on the ``x`` index; at most
        # len(targets) documents are the targets themselves, so ask for that many more.
        records = {"$not": re.compile("^(" + "|".join(RECORD_TYPES) + ")/")}
        cursor = self._refs.find({"x": {"$in": list(exclude)}, "_id": records}, {"_id": 1}).limit(limit + len(exclude))
        found = [d["_id"] async for d in cursor if d["_id"] not in exclude]
        return found[:limit]

    async def scan(self, type: str, after: str | None, count: int) -> list[Stored]:
        filt = {"_id": {"$gt": after}} if after is not None else {}
        found = self._coll(type).find(filt, _CURRENT).sort("_id", 1).limit(count)
        return [Stored(type, d["_id"], d["v"], d["lu"], d["d"], d["r"]) async for d in found]

    async def reindex(self, type: str, after: str | None, count: int) -> str | None:
        await self._ensure(type)
        for attempt in range(8):  # a concurrent writer of the same documents: read the batch again
            try:
                async with self._client.start_session() as session:
                    async with await session.start_transaction(
                        read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
                    ):
                        return await self._reindex(session, type, after, count)
            except PyMongoError as exc:
                if not _conflict(exc) or attempt == 7:
                    raise
        return None

    async def _reindex(self, session, type: str, after: str | None, count: int) -> str | None:
        found = self._coll(type).find({"_id": {"$gt": after or ""}, "d": False}, {"r": 1}, session=session)
        docs = [d async for d in found.sort("_id", 1).limit(count)]
        if not docs:
            return None
        ops, refs = [], []
        for d in docs:
            index = extract(orjson.loads(d["r"]))
            keys = mongo_search.sort_doc(index)
            change = {"$set": {"s": mongo_search.index_doc(index), **({"k": keys} if keys else {})}}
            if not keys:
                change["$unset"] = {"k": ""}
            ops.append(UpdateOne({"_id": d["_id"]}, change))
            targets = mongo_search.reference_targets(index)
            refs.append(ReplaceOne({"_id": f"{type}/{d['_id']}"}, {"x": targets}, upsert=True) if targets
                        else DeleteOne({"_id": f"{type}/{d['_id']}"}))
        await self._coll(type).bulk_write(ops, ordered=True, session=session)
        await self._refs.bulk_write(refs, ordered=True, session=session)
        return docs[-1]["_id"]

    async def changes(self, limit: int) -> list[Change]:
        found = self._outbox.find({}).sort([("lu", 1), ("o", 1), ("_id", 1)]).limit(limit)
        return [Change(d["_id"], d["t"], d["i"], d["v"], d["lu"]) async for d in found]

    async def forget_changes(self, keys: list[str]) -> None:
        if keys:
            await self._outbox.delete_many({"_id": {"$in": keys}})

    # --- writes ------------------------------------------------------------------------------

    async def commit(self, writes: list[Write], guards: list[Guard] = ()) -> None:
        for type in dict.fromkeys(w.type for w in writes):
            await self._ensure(type)
        if "" not in self._ready:
            await self.start()
        try:
            async with self._client.start_session() as session:
                async with await session.start_transaction(
                    read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
                ):
                    await self._apply(session, writes, list(guards))
        except PyMongoError as exc:
            if _conflict(exc):
                raise VersionConflict(f"a concurrent commit changed one of {_names(writes)}") from exc
            raise

    async def _apply(self, session, writes: list[Write], guards: list[Guard]) -> None:
        for guard in guards:
            key = hashlib.sha256(str(guard.query).encode()).hexdigest()
            await self._locks.update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True, session=session)
            filt = mongo_search.compile_filter(guard.query)
            found = self._coll(guard.query.type).find(filt, {"_id": 1}, session=session)
            ids = frozenset([d["_id"] async for d in found.sort("_id", 1).limit(GUARD_LIMIT)])
            if ids != guard.ids:
                raise VersionConflict(f"matches of {guard.query} changed")
        if not writes:
            return
        for type, group in groupby(writes, key=lambda w: w.type):
            ws = list(group)
            ops = [InsertOne(_current_doc(w)) if w.expect == 0
                   else ReplaceOne({"_id": w.id, "v": w.expect}, _current_doc(w)) for w in ws]  # fmt: skip
            result = await self._coll(type).bulk_write(ops, ordered=True, session=session)
            if result.matched_count != sum(1 for w in ws if w.expect):
                raise VersionConflict(await self._mismatch(session, type, ws))
        await self._history.insert_many(
            [_history_doc(w, o) for o, w in enumerate(writes)], ordered=True, session=session
        )
        notified = [_outbox_doc(w, o) for o, w in enumerate(writes) if w.type in NOTIFIED_TYPES]
        if notified:
            await self._outbox.insert_many(notified, ordered=True, session=session)
        ref_ops = []
        for w in writes:
            targets = [] if w.deleted else mongo_search.reference_targets(w.index)
            if targets:
                ref_ops.append(ReplaceOne({"_id": f"{w.type}/{w.id}"}, {"x": targets}, upsert=True))
            elif w.expect:
                ref_ops.append(DeleteOne({"_id": f"{w.type}/{w.id}"}))
        if ref_ops:
            await self._refs.bulk_write(ref_ops, ordered=True, session=session)

    async def _mismatch(self, session, type: str, ws: list[Write]) -> str:
        found = {d["_id"]: d["v"] async for d in self._coll(type).find(
            {"_id": {"$in": [w.id for w in ws]}}, {"v": 1}, session=session)}  # fmt: skip
        for w in ws:  # the replaced ones are at their new version already
            if found.get(w.id, 0) != w.version:
                return f"{w.type}/{w.id} is at version {found.get(w.id, 0)}, expected {w.expect}"
        return f"one of {_names(ws)} changed"

    async def close(self) -> None:
        await self._client.close()


def _current_doc(w: Write) -> dict:
    doc = {"_id": w.id, "v": w.version, "lu": w.last_updated, "d": w.deleted, "r": w.json}
    if w.index is not None and not w.deleted:
        doc["s"] = mongo_search.index_doc(w.index)
        keys = mongo_search.sort_doc(w.index)
        if keys:
            doc["k"] = keys
    return doc


def _history_doc(w: Write, o: int) -> dict:
    return {"_id": f"{w.type}/{w.id}/{w.version}", "t": w.type, "i": w.id, "v": w.version, "lu": w.last_updated,
            "d": w.deleted, "m": w.method, "r": w.json, "o": o}  # fmt: skip


def _outbox_doc(w: Write, o: int) -> dict:
    return {"_id": f"{w.type}/{w.id}/{w.version}", "t": w.type, "i": w.id, "v": w.version, "lu": w.last_updated, "o": o}


def _history_key(d: dict) -> list:
    return [d["lu"], d["o"], d["_id"]]


def _history_entry(d: dict) -> Stored:
    return Stored(d["t"], d["i"], d["v"], d["lu"], d["d"], d["r"], d["m"])


def _conflict(exc: PyMongoError) -> bool:
    """A duplicate key (a concurrent create) or a write conflict (a concurrent change)."""
    if isinstance(exc, DuplicateKeyError) or exc.has_error_label("TransientTransactionError"):
        return True
    if isinstance(exc, OperationFailure):
        if exc.code in (11000, 112):
            return True
        errors = (exc.details or {}).get("writeErrors", []) if isinstance(exc, BulkWriteError) else []
        return any(e.get("code") in (11000, 112) for e in errors)
    return False


def _names(writes: list[Write]) -> str:
    names = [f"{w.type}/{w.id}" for w in writes[:5]]
    return ", ".join(names) + (" ..." if len(writes) > 5 else "")
