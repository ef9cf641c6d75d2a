"""ServiceRequest/{id}/$submit: a draft consultation request becomes active and its ConsultTask
is created, in one storage transaction with a Provenance and the AuditEvent.

The Task: status requested, business status awaiting-acceptance, for the request's patient,
requested by the request's requester, owned by the target Organization when the parameter names
one (a direct invitation, CN-1, only along an active agreement, CN-10; without it platform
matching records candidate organisations on the Task, ``routing.py``), its
priority the request's, and due at a time computed from the form of care and the invited
organisation's deadline policy (RU-14, RU-19, UA-VI.12: ``deadline``). Only the request's requester may submit it."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.auth.access import for_request
from fhir_server.errors import conflict, forbidden, not_found, unprocessable
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.services import Services
from fhir_server.write import Planned, accept, as_stored, check_id, commit_planned, new_id, new_version
from operations import parameters
from operations.consult import caller, chat, consilium, deadline, routing
from operations.consult.codes import CONSULT_TASK, DATA_OPERATION, KIND, PARTICIPANT_TYPE, business_status
from profiles import validator as profile_validator

DEFINITION = parameters.definition("servicerequest-submit")
TARGET = "Parameters.parameter.where(name='organization')"


def consult_task(request: dict, request_id: str, owner: str | None, now: datetime) -> dict:
    kinds = [c for cat in request.get("category") or () for c in cat.get("coding") or () if c.get("system") == KIND]
    task = {
        "resourceType": "Task", "meta": {"profile": [CONSULT_TASK]},
        "basedOn": [{"reference": f"ServiceRequest/{request_id}"}], "status": "requested",
        "businessStatus": business_status("awaiting-acceptance"), "intent": "order",
        "priority": request["priority"], "code": {"coding": kinds[:1]},
        "focus": {"reference": f"ServiceRequest/{request_id}"}, "for": request.get("subject"),
        "authoredOn": deadline.instant(now), "lastModified": deadline.instant(now),
        "requester": request.get("requester"), "owner": {"reference": owner} if owner else None,
    }
    deadline.start(task, now)
    return {k: v for k, v in task.items() if v is not None}


async def target(svc: Services, params: dict[str, list], request: dict, now: datetime) -> str | None:
    """The organisation invited directly (parameter ``organization``): a known Organization with
    an active agreement to consult for the requester's organisation (CN-10, ``routing.agreed``)."""
    ref = parameters.one(params, "organization")
    if ref is None:
        return None
    target = ref.get("reference") or ""
    type, _, id = target.partition("/")
    stored = await svc.store.read("Organization", id) if type == "Organization" and id else None
    if stored is None or stored.deleted:
        raise unprocessable(f"The target organisation '{target}' is not a known Organization", TARGET)
    if not await routing.agreed(svc, request, target, now):
        raise unprocessable(f"There is no active agreement under which {target} consults for the requester's "
                            "organisation (CN-10)", TARGET)
    return target


async def handle(request: Request, svc: Services) -> Response:
    id = request.path_params["id"]
    check_id(id)
    preflight(request)
    params = await parameters.read(request, DEFINITION, svc.settings.max_body_bytes, svc.settings.max_depth)
    access = await for_request(request, svc)
    me = await caller.of(svc, access)

    async def plan() -> Planned:
        rule = access.rule("ServiceRequest", "u")
        access.rule("Task", "c")  # the token must also allow creating the Task (403 otherwise)
        stored = await svc.store.read("ServiceRequest", id)
        if stored is None or stored.deleted or not await access.permits(rule, stored):
            raise not_found(f"ServiceRequest/{id} is not known", f"ServiceRequest/{id}")
        sr = orjson.loads(stored.json)
        if not consultation.is_consultation(sr):
            raise unprocessable(f"ServiceRequest/{id} is not a consultation request (its category has no code of "
                                f"{KIND})", "ServiceRequest.category")
        if sr.get("status") != "draft":
            raise conflict(f"ServiceRequest/{id} is {sr.get('status')}; only a draft can be submitted",
                           "ServiceRequest.status")
        if not me.is_(sr.get("requester")):
            raise forbidden(f"Only the requester ({(sr.get('requester') or {}).get('reference')}) may submit "
                            f"ServiceRequest/{id}", "fhirUser")
        deadline.form_of_care(sr.get("priority"))
        now = datetime.now(timezone.utc)
        owner = await target(svc, params, sr, now)
        seats = await consilium.participants(svc, sr, params, now)  # a consilium's seats (UA-VI.17)
        at = deadline.instant(now)
        sr["status"] = "active"
        profile_validator.claim(sr, profile_validator.TELEMED_REQUEST)  # checked as submitted (profiles/validator.py)
        await consultation.stamp(svc.store, sr, id)
        sr_write = new_version(sr, id, stored.version + 1, "PUT", at)
        task_id = new_id()
        task = consult_task(sr, id, owner, now)
        await deadline.start_for(svc.store, task, sr, now)  # the invited organisation's policy (RU-19)
        if owner is None and not seats:  # platform matching: candidates, or awaiting routing (routing.py)
            routing.offer(task, await routing.match(svc, sr, (sr.get("requester") or {}).get("reference"), now))
        task = accept(task, "Task", svc.settings.max_depth)
        await consultation.stamp(svc.store, task, task_id)
        task_write = new_version(task, task_id, 1, "POST", at)
        children = await consilium.open_seats(svc, task, task_id, seats, at)  # one child Task per seat
        prov = {"resourceType": "Provenance", "recorded": at,
                "target": [{"reference": f"Task/{task_id}/_history/1"},
                           {"reference": f"ServiceRequest/{id}/_history/{sr_write.version}"}],
                "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                           "who": sr["requester"]}],
                "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE"}],
                             "text": "ServiceRequest/$submit"}}
        prov_id = new_id()
        await consultation.stamp(svc.store, prov, prov_id)
        prov_write = new_version(prov, prov_id, 1, "POST", at)
        opened = await chat.opening(svc, sr, id, task_id, at)  # the consultation's chat starts here (SPB-3.4)
        return Planned(201, as_stored(task_write), [sr_write, task_write, *children, prov_write, opened], location=True)

    done = await commit_planned(svc.store, audited(request, "operation", plan))
    return resource_response(request, svc, done.stored, done.status, done.location)
