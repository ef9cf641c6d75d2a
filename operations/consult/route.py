"""Task/{id}/$route: the requester, or a coordinator of the requester's organisation, routes a
consultation (CN-1, CN-10, KZ-6): to one organisation (parameter ``organization``: a direct
invitation, only along an active agreement) or by platform matching again (no parameter:
candidates recorded on the Task, ``routing.py``). Organisations that refused the request before
are left out of the matching (they can still be invited directly).

- A Task not yet taken (``requested``, no owner or an Organization as owner) is routed in place.
- A refused Task (``rejected``) is terminal (FHIR Task state machine): routing it creates a
  successor ConsultTask for the same request (due time counted anew from now, its receipt by
  the new side; RU-19), and the refused Task records it as ``Task.output`` of type
  ``consultation-routing|successor``; it stays the journal's record of the refusal. A refused
  Task is re-routed once (then route its successor); the answer is the refused Task, whose
  output names the successor. The successor gets its own Provenance (entity: the refused Task,
  role ``derivation``).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import conflict, unprocessable
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from operations import parameters
from operations.consult import consilium, deadline, routing, submit
from operations.consult.codes import DATA_OPERATION, PARTICIPANT_TYPE
from operations.consult.deadline import form_of_care, instant
from operations.consult.task import Change, operate, owner_organization, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-route")


def _actor(change: Change, requester_orgs: set[str]) -> str:
    """Who routes: the requester, or a coordinator of the requester's organisation (403 otherwise)."""
    requester = reference(change.task.get("requester"))
    if change.me.is_(change.task.get("requester")):
        return requester
    for org in sorted(requester_orgs):
        if change.me.coordinates(org):
            return change.me.roles_in(org)[0]
    raise not_allowed(f"Only the requester ({requester}) or a coordinator of the requester's organisation may "
                      f"route Task/{change.stored.id}")


async def _request(change: Change) -> tuple[str, dict]:
    ref = reference(change.task.get("focus")) or next(
        (reference(r) for r in change.task.get("basedOn") or () if (reference(r) or "").startswith("ServiceRequest/")),
        None) or ""
    type, _, id = ref.partition("/")
    stored = await change.svc.store.read("ServiceRequest", id) if type == "ServiceRequest" else None
    request = orjson.loads(stored.json) if stored is not None and not stored.deleted else None
    if request is None:
        raise unprocessable(f"Task/{change.stored.id} is based on no known ServiceRequest", "Task.basedOn")
    if request.get("status") != "active":
        raise conflict(f"{ref} is {request.get('status')}; only an active request is routed", "ServiceRequest.status")
    return id, request


async def refused_by(change: Change, request_id: str) -> set[str]:
    """The organisations that refused this request before (their Tasks are rejected)."""
    query = parse_query("Task", [("based-on", f"ServiceRequest/{request_id}"), ("status", "rejected")], strict=True)
    page = await change.svc.store.search(query, count=change.svc.settings.max_chain_ids, cursor=None, total=False)
    found = {await owner_organization(change.svc, orjson.loads(s.json)) for s in page.entries}
    return found - {None}


async def _route(change: Change, task: dict, request_id: str, request: dict, target: str | None) -> None:
    if target is not None:
        routing.assign(task, target)
    else:
        exclude = await refused_by(change, request_id)
        routing.offer(task, await routing.match(change.svc, request, reference(task.get("requester")), change.now,
                                                exclude))


async def _successor(change: Change, request_id: str, request: dict, target: str | None) -> None:
    done = [reference(o.get("valueReference")) for o in change.task.get("output") or ()
            if (routing.ROUTING, routing.SUCCESSOR) in routing.codings(o.get("type"))]
    if done:
        raise conflict(f"Task/{change.stored.id} was already re-routed as {done[0]}: route that one",
                       "Task.output")
    form_of_care(request.get("priority"))  # 422 when the request lost its form of care meanwhile
    task = submit.consult_task(request, request_id, None, change.now)
    task["note"] = [{"authorReference": {"reference": change.actor}, "time": instant(change.now),
                     "text": f"Re-routed after Task/{change.stored.id} was refused"}]
    await _route(change, task, request_id, request, target)
    await deadline.start_for(change.svc.store, task, request, change.now)  # counted from now (RU-19)
    new = await change.add(task)
    change.task.setdefault("output", []).append(
        {"type": {"coding": [{"system": routing.ROUTING, "code": routing.SUCCESSOR, "display": "Re-routed as"}]},
         "valueReference": {"reference": new}})
    await change.add({"resourceType": "Provenance", "target": [{"reference": f"{new}/_history/1"}],
                      "recorded": instant(change.now),
                      "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                                 "who": {"reference": change.actor}}],
                      "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE"}], "text": "Task/$route"},
                      "entity": [{"role": "derivation", "what": {"reference": f"Task/{change.stored.id}"}}]})


async def decide(change: Change) -> None:
    if consilium.is_coordinating(change.task):
        raise unprocessable(f"Task/{change.stored.id} coordinates a consilium: its seats are offered to the "
                            "organisations the request named, it is not routed", "Task.code")
    owner = reference(change.task.get("owner")) or ""
    if change.task.get("status") in ("requested", "in-progress", "on-hold") and owner.startswith("PractitionerRole/"):
        raise conflict(f"Task/{change.stored.id} was taken into work by {owner}; it is routed no more", "Task.owner")
    require_status(change, "requested", "rejected")
    requesters = await routing.requester_organizations(change.svc, reference(change.task.get("requester")))
    change.actor = _actor(change, requesters)
    request_id, request = await _request(change)
    target = await submit.target(change.svc, change.params, request, change.now)
    if change.task["status"] == "rejected":
        await _successor(change, request_id, request, target)
    else:
        await _route(change, change.task, request_id, request, target)


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
