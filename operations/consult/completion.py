"""The last signature completes the consultation (RU-8, RU-25), in its own transaction.

When every attester of the protocol has signed (each consultant, then the organisation's seal),
the protocol and the conclusion become ``final``, the consultation Task ``completed`` (business
status ``completed``, ``executionPeriod.end`` now) with every accepted seat of a consilium, and
the request ``completed``, with a Provenance of the change. The notification system then sends
the ``conclusion`` and ``task-status`` topics: the requester is mailed (RU-8) and, for a
diagnostic-result consultation, the diagnostician (RU-42, ``subscriptions/email.py``), who is
also an agent (information recipient) of the change's Provenance and so may open the
consultation, its conclusion included (participation, ``auth/participants.py``).
"""

from __future__ import annotations

from datetime import datetime

import orjson

from fhir_server.auth import consultation
from fhir_server.storage.port import Stored, Write
from fhir_server.write import new_id, new_version
from fhir_server.subscriptions import email
from operations.consult import chat, consilium
from operations.consult.codes import DATA_OPERATION, PARTICIPANT_TYPE, business_status
from operations.consult.conclusion import output_of
from operations.consult.deadline import instant

RECIPIENT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP",
             "display": "information recipient"}


async def _next(svc, stored: Stored, resource: dict, at: str) -> Write:
    await consultation.stamp(svc.store, resource, stored.id)
    return new_version(resource, stored.id, stored.version + 1, "PUT", at)


async def _read(svc, ref: str | None) -> Stored | None:
    if not ref or ref.count("/") != 1:
        return None
    stored = await svc.store.read(*ref.split("/"))
    return stored if stored is not None and not stored.deleted else None


async def touch(svc, task_s: Stored, at: str) -> Write:
    """A signature that does not complete the consultation still writes its Task (``lastModified``):
    signatures and ``$complete`` then expect the Task version they read, so a protocol is never
    replaced under a signature being made, nor signed while it is replaced (one of two concurrent
    calls is planned again)."""
    task = orjson.loads(task_s.json)
    task["lastModified"] = at
    return await _next(svc, task_s, task, at)


def _done(task: dict, at: str) -> dict:
    task.update(status="completed", businessStatus=business_status("completed"), lastModified=at)
    task.setdefault("executionPeriod", {})["end"] = at
    return task


async def complete(svc, task_s: Stored, composition_s: Stored, agent: dict, now: datetime) -> list[Write]:
    """The writes that complete the consultation of ``task_s`` whose protocol is ``composition_s``;
    ``agent``: the last signature's Provenance agent, who completes it."""
    at = instant(now)
    task = orjson.loads(task_s.json)
    writes = []
    for stored in (composition_s, await _read(svc, output_of(task, "conclusion"))):
        if stored is not None:
            resource = orjson.loads(stored.json)
            resource["status"] = "final"
            writes.append(await _next(svc, stored, resource, at))
    task_w = await _next(svc, task_s, _done(task, at), at)
    writes.append(task_w)
    targets = [task_w]
    if consilium.is_coordinating(task):
        for seat_s, seat in await consilium.seats(svc, task_s.id):
            if seat.get("status") in ("in-progress", "on-hold"):  # a member's seat (refused ones stay so)
                targets.append(await _next(svc, seat_s, _done(seat, at), at))
    recipients: list[str] = []
    for ref in (task.get("basedOn") or ()):
        request_s = await _read(svc, (ref or {}).get("reference"))
        if request_s is not None and request_s.type == "ServiceRequest":
            request = orjson.loads(request_s.json)
            recipients += await email.diagnosticians(svc.store, request)
            if request.get("status") == "active":
                request["status"] = "completed"
                targets.append(await _next(svc, request_s, request, at))
    writes += targets[1:]
    # the diagnostician receives the conclusion (RU-42): an agent of the change, so a participant
    receive = [{"type": {"coding": [RECIPIENT]}, "who": {"reference": r}} for r in dict.fromkeys(recipients)]
    provenance = {"resourceType": "Provenance", "recorded": at,
                  "target": [{"reference": f"{w.type}/{w.id}/_history/{w.version}"} for w in targets],
                  "agent": [{**agent, "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer"}]}},
                            *receive],
                  "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE"}],
                               "text": "Composition/$sign: the last signature completes the consultation"}}
    id = new_id()
    await consultation.stamp(svc.store, provenance, id)
    writes.append(new_version(provenance, id, 1, "POST", at))
    who = (agent.get("who") or {}).get("reference") or (agent.get("onBehalfOf") or {}).get("reference")
    message = chat.event(task, task_s.id, who, "Completed: the protocol is signed (Composition/$sign)", at) if who else None
    if message is not None:  # the event in the request's chat (SPB-4.2)
        message_id = new_id()
        await consultation.stamp(svc.store, message, message_id)
        writes.append(new_version(message, message_id, 1, "POST", at))
    return writes
