"""Reading one job entry as it was at ``transactionTime`` (``at``), a batch at a time.

Every batch resumes from a position kept in the entry (the job record), so the export can stop
anywhere and go on later. A resource exported is always its version current at ``at``: one
updated or deleted after ``at`` is exported as it was then, one created after ``at`` is not.

An entry of ``kind`` "resources" (one type) is read in one of two ways:

- **scan** (no filter on the type): every resource of the type as of ``at``, in id order
  (``readers``); exact by construction.
- **search** (``_typeFilter``, the caller's access limits, the patients of a Patient/Group
  export): two phases. *main*: the search engine's pages of each query in turn (several
  queries are ORed: a match of an earlier one is not repeated); a match whose current version
  is from before ``at`` is that version, matched by the index, and is exported; one changed
  after ``at`` is skipped. *changed*: every resource of the type changed after ``at`` (found by
  ``readers.changed``, whatever its current version matches) is matched as of ``at``: its
  version at ``at`` against the queries, in memory (``match``), and exported when it matches and
  the main phase has not exported it already (the ids exported are kept in a file,
  ``writer.PartWriter.known``). So filters are judged on the snapshot, never on later versions.

An entry of ``kind`` "associated" is read the same way and keeps only the Provenance resources
that ``associated`` wants; the one of ``kind`` "deleted" lists the deletions of the export's
types since ``_since`` (one pass over the history, ``readers.deletions``) as transaction Bundles
of one DELETE entry each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson

from fhir_server.bulk.match import Matcher
from fhir_server.bulk.readers import Reader, wanted
from fhir_server.search import execute
from fhir_server.search.plan import parse_query
from fhir_server.storage.port import Store, Stored

CHANGED_COUNT = 1000  # ids of changed resources looked at per batch
Known = Callable[[set[str]], Awaitable[set[str]]]  # those of some ids already exported by the entry


@dataclass(slots=True)
class Batch:
    bodies: list[bytes]  # the lines to write (without newlines)
    ids: list[str] | None  # their ids, for the entry's id file (search-mode entries)
    read: int  # rows read (for sizing the next batch)
    bytes: int
    done: bool
    data: bytes | None = None  # or the lines as NDJSON already (``lines`` of them)
    lines: int = 0


class Job:
    """What every entry of one run shares: the store, the reader, the matcher, the instants."""

    def __init__(self, store: Store, reader: Reader, record: dict, bound: int):
        self.store, self.reader, self.bound = store, reader, bound
        self.at, self.since, self.until = record["transactionTime"], record.get("since"), record.get("until")
        self.base = record.get("base")  # absolute references on it are local
        self.matcher = Matcher(store, bound)
        self.resources = {e["type"]: e for e in record["types"] if e.get("kind", "resources") == "resources"}
        self.associated = None
        if record.get("associated"):
            from fhir_server.bulk.associated import Associated

            entry = next(e for e in record["types"] if e.get("kind") == "associated")
            self.associated = Associated(self, record["associated"], entry.get("queries"))

    async def exported(self, type: str, id: str) -> bool:
        """Whether this job exports ``type/id`` (as entries of kind "resources" do)."""
        entry = self.resources.get(type)
        if entry is None:
            return False
        v = (await self.reader.versions_at(type, [id], self.at)).get(id)
        if not wanted(v, self.since, self.until):
            return False
        return entry.get("queries") is None or await self.matcher.matches(v, entry["queries"])

    def close(self) -> None:
        self.matcher.close()
        self.reader.close()


async def next_batch(job: Job, entry: dict, count: int, known: Known, joined: bool = False) -> Batch:
    """The next batch of ``entry`` (updated in place: its position, phase, query); ``joined``: the
    lines may come as NDJSON ``data`` (when they are written as stored)."""
    kind = entry.get("kind", "resources")
    if kind == "deleted":
        return await _deleted(job, entry, count)
    associated = job.associated if kind == "associated" else None
    if entry.get("queries") is None:
        rows = await job.reader.scan(entry["type"], entry.get("position"), count, job.at, job.since, job.until,
                                     with_ids=associated is not None, joined=joined and associated is None)
        entry["position"] = rows.position
        batch = Batch(rows.bodies, None, rows.read, rows.bytes, rows.done, rows.data, rows.lines)
        ids = rows.ids
    else:
        if entry.get("phase", "main") == "main":
            batch = await _search(job, entry, count)
        else:
            batch = await _changed(job, entry, known)
        ids = batch.ids
    if associated is not None:
        keep = [await associated.wants(id, body) for id, body in zip(ids, batch.bodies)]
        batch.bodies = [b for b, k in zip(batch.bodies, keep) if k]
        if batch.ids is not None:
            batch.ids = [i for i, k in zip(batch.ids, keep) if k]
    return batch


async def _search(job: Job, entry: dict, count: int) -> Batch:
    type, queries, k = entry["type"], entry["queries"], entry.get("query", 0)
    items = [tuple(i) for i in queries[k]] + ([("_lastUpdated", f"ge{job.since}")] if job.since else [])
    page = await execute.search(job.store, parse_query(type, items, strict=True), count=count,
                                cursor=entry.get("position"), total=False, bound=job.bound)
    rows = page.entries
    if k > 0 and rows:  # ORed queries: leave out what an earlier query already exported
        ids = ",".join(s.id for s in rows)
        seen: set[str] = set()
        for earlier in queries[:k]:
            q = parse_query(type, [tuple(i) for i in earlier] + [("_id", ids)], strict=True)
            seen.update(s.id for s in (await execute.search(job.store, q, count=len(rows), cursor=None, total=False,
                                                             bound=job.bound)).entries)
        rest = [s for s in rows if s.id not in seen]
        if rest:  # one changed since this page was read: the version read is judged in memory
            now = {c.id: c.version for c in await job.store.read_many(type, [s.id for s in rest])}
            for s in rest:
                if now.get(s.id) != s.version and await job.matcher.matches(s, queries[:k]):
                    seen.add(s.id)
        rows = [s for s in rows if s.id not in seen]
    # Changed after ``at``: judged as of ``at`` in the changed phase.
    out = [s for s in rows if s.last_updated <= job.at and wanted(s, job.since, job.until)]
    entry["position"] = page.next_cursor
    done = page.next_cursor is None
    if done:
        if k + 1 < len(queries):
            entry["query"], entry["position"], done = k + 1, None, False
        else:
            entry["phase"], entry["position"], done = "changed", None, False
    return Batch([s.json for s in out], [s.id for s in out], len(page.entries),
                 sum(len(s.json) for s in page.entries), done)


async def _changed(job: Job, entry: dict, known: Known) -> Batch:
    type = entry["type"]
    ids, position, done = await job.reader.changed(type, job.at, entry.get("position"), CHANGED_COUNT)
    entry["position"] = position
    fresh = set(ids) - await known(set(ids))
    versions = await job.reader.versions_at(type, [i for i in ids if i in fresh], job.at)
    out: list[Stored] = []
    for id in dict.fromkeys(i for i in ids if i in fresh):
        v = versions.get(id)
        if wanted(v, job.since, job.until) and await job.matcher.matches(v, entry["queries"]):
            out.append(v)
    return Batch([s.json for s in out], [s.id for s in out], len(ids), sum(len(s.json) for s in out), done)


async def _deleted(job: Job, entry: dict, count: int) -> Batch:
    """Deletions of the export's types in ``(since, at]`` (and up to ``_until``), of resources
    still deleted at ``at``, whose last version before the deletion the export would have
    exported (its type's queries)."""
    rows, position, done = await job.reader.deletions(entry["types"], job.since, job.at, entry.get("position"), count)
    entry["position"] = position
    rows = [s for s in rows if job.until is None or s.last_updated <= job.until]
    now: dict[tuple[str, str], Stored] = {}
    for type in dict.fromkeys(s.type for s in rows):
        ids = list(dict.fromkeys(s.id for s in rows if s.type == type))
        now.update(((type, id), v) for id, v in (await job.reader.versions_at(type, ids, job.at)).items())
    lines = []
    for s in rows:
        v = now.get((s.type, s.id))
        if v is None or not v.deleted or v.version != s.version:
            continue  # re-created (or deleted again) before ``at``: listed once, by the deletion current at ``at``
        queries = job.resources[s.type].get("queries") if s.type in job.resources else None
        if queries is not None:
            before = await job.store.vread(s.type, s.id, s.version - 1)
            if before is None or not await job.matcher.matches(before, queries):
                continue
        lines.append(deletion_bundle(s.type, s.id, s.version, s.last_updated))
    return Batch(lines, None, len(rows), sum(map(len, lines)), done)


def deletion_bundle(type: str, id: str, version: int, last_updated: str) -> bytes:
    """One NDJSON line of the manifest's ``deleted`` files: a transaction Bundle of one DELETE."""
    bundle_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{type}/{id}/_history/{version}"))
    return orjson.dumps({"resourceType": "Bundle", "id": bundle_id, "meta": {"lastUpdated": last_updated},
                         "type": "transaction",
                         "entry": [{"request": {"method": "DELETE", "url": f"{type}/{id}"}}]})
