"""Task/{id}/$refuse: the organisation the consultation is with refuses it on formal grounds,
with a reason code (``refusal-reason``) and a text (CN-3.2, SPB-3.3). Any practitioner of that
organisation may refuse a request offered to it; once taken, the owner or a coordinator. The
Task is rejected; its request stays active so that it can be routed again (a later part)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import invalid
from fhir_server.services import Services
from operations import parameters
from operations.consult.codes import REFUSAL_REASON, business_status, codes
from operations.consult.task import Change, operate, owner_organization, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-refuse")


async def decide(change: Change) -> None:
    require_status(change, "requested", "in-progress", "on-hold")
    owner = reference(change.task.get("owner")) or ""
    org = await owner_organization(change.svc, change.task)
    allowed = (change.me.is_(change.task.get("owner")) or change.me.coordinates(org)
               or owner.startswith("Organization/") and change.me.roles_in(org))
    if not allowed:
        raise not_allowed(f"Only {owner or 'the owner'} (or a coordinator of its organisation) may refuse "
                     f"Task/{change.stored.id}")
    reason = parameters.one(change.params, "reason")
    if reason.get("system") != REFUSAL_REASON or reason.get("code") not in codes("refusal-reason"):
        raise invalid(f"The reason must be a code of {REFUSAL_REASON} ({', '.join(sorted(codes('refusal-reason')))})",
                      "Parameters.parameter.where(name='reason')")
    text = parameters.one(change.params, "text")
    change.task.update(status="rejected", businessStatus=business_status("refused"),
                       statusReason={"coding": [reason], "text": text})
    change.actor = (owner if owner in change.me.refs else None) or (change.me.roles_in(org) or [change.me.user])[0]
    change.reason = text


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
