"""Running one export job: every entry of the record in turn, a batch at a time, with checkpoints.

A batch is sized by bytes: the row count of the next read is the byte budget
(``bulk_batch_bytes``) over the mean size of the rows read so far. Each batch's lines are
appended to the entry's part file while the next batch is read (and its writeback to disk
started). Every ``CHECKPOINT_BATCHES`` batches or ``CHECKPOINT_SECONDS`` (and when asked to stop)
the files are fsynced and then the job record (positions, parts, counts) is replaced atomically;
an entry's files are fsynced when it ends, before any later checkpoint records it as done, and
the record saved as completed last. A restart resumes from the last checkpoint, cutting back any
lines written after it. Reading
starts no sooner than ``SETTLE_SECONDS`` after ``transactionTime``, so writes stamped before it
have committed. The stored JSON bytes are written as they are (no parsing), unless ``_elements``
asks for a subset.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import orjson

from fhir_server.bulk import readers, snapshot
from fhir_server.bulk.writer import PartWriter
from fhir_server.errors import issue, outcome
from fhir_server.summary import subset

SETTLE_SECONDS = 0.5
FIRST_COUNT, MIN_COUNT, MAX_COUNT = 100, 10, 20_000
CHECKPOINT_BATCHES, CHECKPOINT_SECONDS = 16, 5.0


class Stopped(Exception):
    """The job was cancelled (or the caller asked to stop); the record keeps its checkpoint."""


async def run(store, settings, record: dict, directory: Path, save: Callable[[dict], None], *,
              should_stop: Callable[[], bool] = lambda: False,
              on_batch: Callable[[str, int], None] = lambda type, n: None, **_ignored) -> None:
    """Run (or resume) ``record`` until it completes; its files go to ``directory``."""
    at = record["transactionTime"]
    wait = _epoch(at) + SETTLE_SECONDS - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    if record["state"] == "accepted":
        record["state"] = "running"
        await asyncio.to_thread(save, record)
    job = snapshot.Job(store, readers.for_store(store), record, settings.max_chain_ids)
    try:
        for entry in record["types"]:
            if not entry.get("done"):
                await _run_entry(job, settings, record, entry, directory, save, should_stop, on_batch)
    finally:
        job.close()
    for ids in directory.glob("*.ids"):  # needed while the job may resume, not after
        ids.unlink()
    if record.get("warnings"):
        with open(directory / "errors-1.ndjson", "wb") as f:
            f.write(orjson.dumps(outcome([issue("not-supported", w, severity="warning") for w in record["warnings"]])) + b"\n")
    record["state"] = "completed"
    record["expires_at"] = time.time() + settings.bulk_file_ttl_seconds
    await asyncio.to_thread(save, record)


async def _run_entry(job, settings, record: dict, entry: dict, directory: Path, save, should_stop, on_batch) -> None:
    searched = entry.get("queries") is not None and entry.get("kind", "resources") != "deleted"
    writer = PartWriter(directory, entry.get("file", entry["type"]), entry.setdefault("parts", []),
                        settings.bulk_file_max_bytes, entry.setdefault("ids", {}) if searched else None)
    elements = record.get("elements") or {}
    kept = [] if entry.get("kind") == "deleted" else elements.get(entry["type"], []) + elements.get("*", [])
    count = entry.get("count") or FIRST_COUNT
    pending: asyncio.Task | None = None  # the previous batch's write
    batches, last_checkpoint = 0, time.monotonic()

    async def settle() -> None:
        nonlocal pending
        if pending is not None:
            task, pending = pending, None
            await task

    async def checkpoint() -> None:
        nonlocal batches, last_checkpoint
        await settle()
        await asyncio.to_thread(_checkpoint, writer, record, save)
        batches, last_checkpoint = 0, time.monotonic()

    async def known(ids: set[str]) -> set[str]:
        await settle()
        return await asyncio.to_thread(writer.known, ids)

    try:
        while not entry.get("done"):
            if should_stop():
                await checkpoint()
                raise Stopped
            batch = await snapshot.next_batch(job, entry, count, known, joined=not kept)
            data, n = (batch.data, batch.lines) if batch.data is not None else _render(batch.bodies, kept)
            entry["done"] = batch.done
            if batch.read:
                count = max(MIN_COUNT, min(MAX_COUNT, settings.bulk_batch_bytes * batch.read // max(batch.bytes, 1)))
            entry["count"] = count
            record["progress"] = record.get("progress", 0) + n
            await settle()
            if n:
                pending = asyncio.create_task(asyncio.to_thread(writer.write, data, n, batch.ids))
            batches += 1
            if batches >= CHECKPOINT_BATCHES or time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                await checkpoint()
            if entry.get("kind", "resources") == "resources":
                on_batch(entry["type"], n)
    finally:
        if pending is not None and not pending.done():
            await asyncio.gather(pending, return_exceptions=True)
        await asyncio.to_thread(writer.close)  # durable: later checkpoints record this entry as done


def _checkpoint(writer: PartWriter, record: dict, save) -> None:
    writer.sync()
    save(record)


def _render(bodies: list[bytes], elements: list[str]) -> tuple[bytes, int]:
    """The NDJSON lines of ``bodies`` (stored JSON) and their number."""
    if not bodies:
        return b"", 0
    if elements:
        return b"".join(orjson.dumps(subset(orjson.loads(b), None, elements)) + b"\n" for b in bodies), len(bodies)
    data = b"\n".join(bodies) + b"\n"
    if data.count(b"\n") != len(bodies):  # stored bytes are compact JSON; re-serialise any that is not
        data = b"".join(orjson.dumps(orjson.loads(b)) + b"\n" for b in bodies)
    return data, len(bodies)


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


async def run_job(svc, jobs, job_id: str) -> None:
    """A worker's run of a stored job (the caller's access limits are in its queries)."""
    record = jobs.load(job_id)
    if record is None:
        return
    try:
        await run(svc.store, svc.settings, record, jobs.dir(job_id), jobs.save,
                  should_stop=lambda: jobs.cancelled(job_id))
    except Stopped:
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded in the job; the status answers 500
        if not jobs.cancelled(job_id):
            record["state"], record["error"] = "failed", f"{type(exc).__name__}: {exc}"
            record["expires_at"] = time.time() + svc.settings.bulk_file_ttl_seconds
            jobs.save(record)
        raise
