"""Task/{id}/$accept: a practitioner of the organisation a consultation is offered to takes it
into work (SPB-3.3, CN-3.2). Owner: their PractitionerRole; status in-progress; business status
in-work; ``executionPeriod.start`` now."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import conflict, unprocessable
from fhir_server.services import Services
from operations import parameters
from operations.consult.codes import business_status
from operations.consult.deadline import instant
from operations.consult.task import Change, operate, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-accept")


async def decide(change: Change) -> None:
    require_status(change, "requested")
    org = reference(change.task.get("owner"))
    if not (org or "").startswith("Organization/"):
        raise conflict(f"Task/{change.stored.id} is not offered to an organisation yet (no owner)", "Task.owner")
    roles = change.me.roles_in(org)
    if not roles:
        raise not_allowed(f"{change.me.user} has no role in {org}, to which the consultation is offered")
    wanted = reference(parameters.one(change.params, "role"))
    if wanted is not None and wanted not in roles:
        raise unprocessable(f"{wanted} is not one of the caller's roles in {org}",
                            "Parameters.parameter.where(name='role')")
    if wanted is None and len(roles) > 1:
        raise unprocessable(f"The caller has several roles in {org} ({', '.join(sorted(roles))}): name one "
                            "with the parameter 'role'", "Parameters.parameter.where(name='role')")
    role = wanted or roles[0]
    change.task.update(owner={"reference": role}, status="in-progress", businessStatus=business_status("in-work"))
    change.task["executionPeriod"] = {"start": instant(change.now)}
    change.actor = role


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
