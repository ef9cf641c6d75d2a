"""Task/{id}/$claim: a practitioner of a candidate organisation takes a consultation the platform
offered (CN-1: "an organisation claims it"). Like ``$accept`` (whose checks it reuses): the owner
becomes the caller's PractitionerRole in that organisation, status in-progress, business status
in-work, ``executionPeriod.start`` now. The candidates stay on the Task as the record of the
matching; the other candidates lose sight of it (participation counts candidates of
``requested`` Tasks only).

Of candidates claiming at the same moment exactly one wins: the Task is written expecting the
version that was read, so the others are planned again, see it in-progress and get 409. A
candidate's practitioner who calls after the claim can no longer see the Task, and gets 409 too
("claimed by another candidate"): the state, not the content, is revealed."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import OperationOutcomeError, conflict, unprocessable
from fhir_server.services import Services
from operations import parameters
from operations.consult import accept, caller, consilium, routing
from operations.consult.codes import is_consult_task
from operations.consult.task import Change, operate, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-claim")
ROLE = "Parameters.parameter.where(name='role')"


async def decide(change: Change) -> None:
    if consilium.is_coordinating(change.task):
        raise unprocessable(f"Task/{change.stored.id} coordinates a consilium: its seats are accepted ($accept), "
                            "it is not claimed", "Task.code")
    require_status(change, "requested")
    owner = reference(change.task.get("owner"))
    if owner:
        raise conflict(f"Task/{change.stored.id} is not offered to candidates: it is with {owner} ($accept)",
                       "Task.owner")
    offered = routing.candidates_of(change.task)
    mine = [org for org in offered if change.me.roles_in(org)]
    if not mine:
        raise not_allowed(f"{change.me.user} has no role in a candidate organisation of Task/{change.stored.id} "
                          f"({', '.join(offered) or 'none recorded'})")
    wanted = reference(parameters.one(change.params, "role"))
    if wanted is not None:
        org = caller.organization(change.me.roles[wanted]) if wanted in change.me.roles else None
        if org not in mine:
            raise unprocessable(f"{wanted} is not one of the caller's roles in a candidate organisation", ROLE)
    elif len(mine) > 1:
        raise unprocessable(f"The caller has roles in several candidate organisations ({', '.join(mine)}): name "
                            "one of them with the parameter 'role'", ROLE)
    else:
        org = mine[0]
    change.task["owner"] = {"reference": org}
    await accept.decide(change)  # the caller's role there becomes the owner; in-progress


async def _offered_before(request: Request, svc: Services) -> bool:
    """Whether the caller's organisation is a candidate of a Task they cannot see (any more): another
    candidate claimed it first, or is claiming it at this moment (the read may still show it
    offered while the claim commits)."""
    stored = await svc.store.read("Task", request.path_params["id"])
    task = orjson.loads(stored.json) if stored is not None and not stored.deleted else {}
    if not is_consult_task(task):
        return False
    me = await caller.of(svc, await for_request(request, svc))
    return any(me.roles_in(org) for org in routing.candidates_of(task))


async def handle(request: Request, svc: Services) -> Response:
    try:
        return await operate(request, svc, DEFINITION, decide)
    except OperationOutcomeError as e:
        if e.status != 404 or not await _offered_before(request, svc):
            raise
        raise conflict(f"Task/{request.path_params['id']} is no longer offered to the caller's organisation: "
                       "another candidate claimed it, or it was closed", "Task.status") from None
