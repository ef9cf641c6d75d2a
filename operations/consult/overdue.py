"""The deadline sweeper: flags consultations whose due time passed (RU-19, SPB-3.1).

Every ``deadline_sweep_seconds`` the server looks at the open consultation Tasks (``requested``,
``in-progress``; ``on-hold`` waits for information and its clock is paused, so it has no due
time) and tags each one whose ``restriction.period.end`` is in the past with
``{CANONICAL}/CodeSystem/deadline-state|overdue``, in a new version of the Task with its
Provenance (agent: this server). The change fires the ``deadline-overdue`` topic: subscribers and
the Task's requester and owner are notified (docs/notifications.md). The tag stays on the Task
as the record that it was late; a Task is flagged once.

Several server processes may sweep at once: each flag is a write expecting the version it read,
so one of them flags a Task and the others see it already flagged.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import orjson

from fhir_server.auth import consultation
from fhir_server.search.plan import parse_query
from fhir_server.storage.port import VersionConflict
from fhir_server.subscriptions.topics import DEADLINE
from fhir_server.write import new_id, new_version
from operations.consult.codes import CONSULT_TASK, DATA_OPERATION, PARTICIPANT_TYPE
from operations.consult.deadline import instant, parse_instant

log = logging.getLogger(__name__)
OPEN = "requested,in-progress"
PAGE = 500
OVERDUE = {"system": DEADLINE, "code": "overdue", "display": "Overdue"}


def is_overdue(task: dict, now: datetime) -> bool:
    """Open, past its due time, and not flagged yet."""
    if task.get("status") not in OPEN.split(","):
        return False
    if any(t.get("system") == DEADLINE for t in (task.get("meta") or {}).get("tag") or () if isinstance(t, dict)):
        return False
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    try:
        return isinstance(end, str) and parse_instant(end) < now
    except ValueError:
        return False


async def sweep(svc, now: datetime | None = None) -> int:
    """Flag every overdue consultation Task now; how many were flagged."""
    now = now or datetime.now(timezone.utc)
    query = parse_query("Task", [("_profile", CONSULT_TASK), ("status", OPEN)], strict=True)
    flagged, cursor = 0, None
    while True:
        page = await svc.store.search(query, count=PAGE, cursor=cursor, total=False)
        for stored in page.entries:
            task = orjson.loads(stored.json)
            if is_overdue(task, now):
                flagged += await _flag(svc, stored, task, now)
        if page.next_cursor is None:
            return flagged
        cursor = page.next_cursor


async def _flag(svc, stored, task: dict, now: datetime) -> int:
    meta = task.setdefault("meta", {})
    meta["tag"] = [*(meta.get("tag") or []), OVERDUE]
    at = instant(now)
    write = new_version(task, stored.id, stored.version + 1, "PUT", at)
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": f"Task/{stored.id}/_history/{stored.version + 1}"}],
        "recorded": at,
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE"}], "text": "deadline overdue"},
        "reason": [{"text": f"due {task['restriction']['period']['end']} passed"}],
        "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
                   "who": {"display": "telemed FHIR server (deadline sweeper)"}}],
    }
    prov_id = new_id()
    await consultation.stamp(svc.store, provenance, prov_id)
    try:
        await svc.store.commit([write, new_version(provenance, prov_id, 1, "POST", at)])
    except VersionConflict:
        return 0  # changed meanwhile: the next sweep looks again
    return 1


async def run(svc, stop: asyncio.Event) -> None:
    """Sweep every ``deadline_sweep_seconds`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            n = await sweep(svc)
            if n:
                log.info("flagged %d overdue consultations", n)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged; the next sweep tries again
            log.exception("deadline sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), svc.settings.deadline_sweep_seconds)
        except asyncio.TimeoutError:
            pass
