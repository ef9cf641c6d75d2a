"""Task/{id}/$cancel: the requester cancels the consultation (SPB-3.3). The Task is cancelled and
its ServiceRequest revoked, in the same transaction. Cancelling a consilium's coordinating Task
cancels its open seats with it; a single seat is not cancelled apart (422): the consilium is one
request (UA-VI.17)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.services import Services
from operations import parameters
from fhir_server.errors import unprocessable
from operations.consult import consilium
from operations.consult.codes import business_status
from operations.consult.deadline import instant
from operations.consult.task import Change, operate, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-cancel")


async def decide(change: Change) -> None:
    require_status(change, "requested", "in-progress", "on-hold")
    requester = reference(change.task.get("requester"))
    if not change.me.is_(change.task.get("requester")):
        raise not_allowed(f"Only the requester ({requester}) may cancel Task/{change.stored.id}")
    if consilium.is_consilium(change.task) and change.task.get("partOf"):
        raise unprocessable(f"Task/{change.stored.id} is a seat of a consilium: cancel the consilium's coordinating "
                            f"Task ({reference(change.task['partOf'][0])})", "Task.partOf")
    reason = parameters.one(change.params, "reason")
    change.task.update(status="cancelled", businessStatus=business_status("cancelled"))
    if reason:
        change.task["statusReason"] = {"text": reason}
    if consilium.is_coordinating(change.task):
        for stored, seat in await consilium.seats(change.svc, change.stored.id):
            if seat.get("status") in consilium.OPEN:
                seat.update(status="cancelled", businessStatus=business_status("cancelled"),
                            lastModified=instant(change.now))
                if reason:
                    seat["statusReason"] = {"text": reason}
                await change.replace(stored, seat)
    for ref in change.task.get("basedOn") or ():
        type, _, id = (reference(ref) or "").partition("/")
        stored = await change.svc.store.read(type, id) if type == "ServiceRequest" else None
        if stored is not None and not stored.deleted:
            request = orjson.loads(stored.json)
            if request.get("status") in ("draft", "active", "on-hold"):
                await change.replace(stored, request | {"status": "revoked"})
    change.actor = requester if requester in change.me.refs else change.me.user
    change.reason = reason


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
