"""Task/{id}/$transfer: the owner, or a coordinator of the owner's organisation, hands the
consultation to another PractitionerRole of the same organisation, with a reason (SPB-3.3).

The previous owner is an agent of the change's Provenance, so they keep access to the
consultation (participation, docs/security.md). Status and due time do not change."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import unprocessable
from fhir_server.services import Services
from operations import parameters
from operations.consult import caller
from operations.consult.deadline import instant
from operations.consult.task import Change, operate, owner_organization, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-transfer")
TARGET = "Parameters.parameter.where(name='owner')"


async def decide(change: Change) -> None:
    require_status(change, "in-progress", "on-hold")
    previous = reference(change.task.get("owner"))
    org = await owner_organization(change.svc, change.task)
    if not (change.me.is_(change.task.get("owner")) or change.me.coordinates(org)):
        raise not_allowed(f"Only the owner ({previous}) or a coordinator of {org} may transfer "
                          f"Task/{change.stored.id}")
    target = reference(parameters.one(change.params, "owner")) or ""
    if not target.startswith("PractitionerRole/"):
        raise unprocessable(f"The new owner must be a PractitionerRole, not '{target}'", TARGET)
    stored = await change.svc.store.read("PractitionerRole", target.split("/", 1)[1])
    role = orjson.loads(stored.json) if stored is not None and not stored.deleted else None
    if role is None or role.get("active") is False:
        raise unprocessable(f"{target} is not an active PractitionerRole", TARGET)
    if caller.organization(role) != org:
        raise unprocessable(f"{target} is not a role of {org}: a consultation is transferred within its "
                            "organisation", TARGET)
    if target == previous:
        raise unprocessable(f"{target} already owns Task/{change.stored.id}", TARGET)
    reason = parameters.one(change.params, "reason")
    change.task["owner"] = {"reference": target}
    change.task.setdefault("note", []).append(
        {"authorReference": {"reference": change.me.user}, "time": instant(change.now),
         "text": f"Transferred from {previous} to {target}: {reason}"})
    change.actor = previous if previous in change.me.refs else (change.me.roles_in(org) or [change.me.user])[0]
    change.reason = reason
    change.agents = [(previous, "custodian"), (target, "performer")]


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
