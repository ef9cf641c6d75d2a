"""Running one export job: every type in turn, a batch at a time, checkpointed after each batch.

A batch is sized by bytes: the row count of the next read is the byte budget
(``bulk_batch_bytes``) over the mean size of the rows read so far. After each batch the lines
are appended to the type's part file and fsynced, then the job record (positions, parts,
counts) is replaced atomically: a restart resumes from there, cutting back any lines written
after the last checkpoint. Reading starts no sooner than ``SETTLE_SECONDS`` after
``transactionTime``, so writes stamped before it have committed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import orjson

from fhir_server.bulk import snapshot
from fhir_server.bulk.writer import PartWriter
from fhir_server.errors import issue, outcome
from fhir_server.summary import subset

SETTLE_SECONDS = 0.5
FIRST_COUNT, MIN_COUNT, MAX_COUNT = 100, 10, 10_000


class Stopped(Exception):
    """The job was cancelled (or the caller asked to stop); the record keeps its checkpoint."""


async def run(store, settings, record: dict, directory: Path, save: Callable[[dict], None], *,
              check_for: Callable[[str], snapshot.Check] = lambda type: None,
              should_stop: Callable[[], bool] = lambda: False,
              on_batch: Callable[[str, int], None] = lambda type, n: None) -> None:
    """Run (or resume) ``record`` until it completes; its files go to ``directory``."""
    at = record["transactionTime"]
    wait = _epoch(at) + SETTLE_SECONDS - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    if record["state"] == "accepted":
        record["state"] = "running"
        await asyncio.to_thread(save, record)
    for state in record["types"]:
        if state.get("done"):
            continue
        writer = PartWriter(directory, state["type"], state.setdefault("parts", []), settings.bulk_file_max_bytes)
        elements = record.get("elements") or {}
        kept = elements.get(state["type"], []) + elements.get("*", [])
        check = check_for(state["type"])
        count = state.get("count") or FIRST_COUNT
        pending: asyncio.Task | None = None  # the previous batch's write and checkpoint
        try:
            while not state.get("done"):
                if should_stop():
                    raise Stopped
                batch = await snapshot.next_batch(store, state, at, record.get("since"), record.get("until"), count,
                                                  settings.max_chain_ids, check)
                lines = [_line(s.json, kept) for s in batch.resources]
                state["done"] = batch.done
                if batch.read:
                    count = max(MIN_COUNT, min(MAX_COUNT, settings.bulk_batch_bytes * batch.read // max(batch.bytes, 1)))
                state["count"] = count
                record["progress"] = record.get("progress", 0) + len(lines)
                checkpoint = orjson.loads(orjson.dumps(record))  # positions after this batch
                if pending is not None:
                    await pending
                # The next batch is read while this one is written: the checkpoint is saved once
                # its lines are durable, with the parts as they are then.
                pending = asyncio.create_task(_write(writer, lines, checkpoint, record["types"].index(state), save))
                on_batch(state["type"], len(lines))
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                await asyncio.gather(pending, return_exceptions=True)
            writer.close()
    if record.get("warnings"):
        with open(directory / "errors-1.ndjson", "wb") as f:
            f.write(orjson.dumps(outcome([issue("not-supported", w, severity="warning") for w in record["warnings"]])) + b"\n")
    record["state"] = "completed"
    record["expires_at"] = time.time() + settings.bulk_file_ttl_seconds
    await asyncio.to_thread(save, record)


async def _write(writer: PartWriter, lines: list[bytes], checkpoint: dict, index: int, save) -> None:
    await asyncio.to_thread(writer.write, lines)
    checkpoint["types"][index]["parts"] = [dict(p) for p in writer.parts]
    await asyncio.to_thread(save, checkpoint)


def _line(body: bytes, elements: list[str]) -> bytes:
    if elements:
        return orjson.dumps(subset(orjson.loads(body), None, elements)) + b"\n"
    if b"\n" in body:  # stored bytes are compact JSON; re-serialise if not
        return orjson.dumps(orjson.loads(body)) + b"\n"
    return body + b"\n"


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


async def run_job(svc, jobs, job_id: str) -> None:
    """A worker's run of a stored job, with the caller's access re-checked on older versions."""
    record = jobs.load(job_id)
    if record is None:
        return
    try:
        await run(svc.store, svc.settings, record, jobs.dir(job_id), jobs.save,
                  check_for=_checks(svc, record), should_stop=lambda: jobs.cancelled(job_id))
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


def _checks(svc, record: dict) -> Callable[[str], snapshot.Check]:
    """Per type: the check of an older version of a changed resource, against the caller's
    access (from the kick-off token's claims) and the export's patients."""
    from fhir_server.auth.access import Access, in_compartment
    from fhir_server.auth.principal import Principal
    from fhir_server.search.extract import extract

    access = Access(svc, Principal.from_claims(record["claims"])) if record.get("claims") else None
    patients = set(record.get("patients") or ())

    def for_type(type: str) -> snapshot.Check:
        async def check(stored) -> bool:
            if patients:
                resource = orjson.loads(stored.json)
                index = extract(resource)
                if not (type == "Patient" and stored.id in patients or
                        any(in_compartment(resource, p, index) for p in patients)):
                    return False
            if access is not None:
                return await access.permits(access.rule(type, "s"), stored)
            return True

        return check

    return for_type
