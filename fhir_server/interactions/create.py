"""create: POST [base]/[type], with conditional create through If-None-Exist."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.subscriptions import subscription
from fhir_server.auth.access import Access, for_request, outside
from fhir_server.http import read_json
from fhir_server.interactions.conditional import criteria, matches
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.services import Services
from fhir_server.storage.port import Guard
from fhir_server.write import Planned, accept, as_stored, check_profiles, check_type, commit_planned, new_id, new_version
from fhir_server.errors import multiple_matches
from operations.consult import chat


async def plan(svc: Services, access: Access, resource: dict, if_none_exist: str | None,
               id: str | None = None) -> Planned:
    """Create ``resource`` with a new server id, unless ``If-None-Exist`` criteria match."""
    rule = access.rule(resource["resourceType"], "c")
    guards = []
    if if_none_exist:
        query = criteria(resource["resourceType"], if_none_exist, "If-None-Exist")
        found = await matches(svc, query)
        if len(found) > 1:
            raise multiple_matches(f"If-None-Exist criteria {query} match more than one resource", "If-None-Exist")
        if found:
            if not await access.visible(found[0]):
                raise outside(resource["resourceType"])
            return Planned(200, found[0], message="A matching resource exists; nothing was created")
        guards.append(Guard(query, frozenset()))
    id = id or new_id()
    await consultation.stamp(svc.store, resource, id)
    await chat.admit(svc, access, None, resource)  # a consultation chat message: sender, time, open
    subscription.stamp(access.who, None, resource)
    write = new_version(resource, id, 1, "POST", checked=False)
    if not await access.permits(rule, resource=resource | {"id": id}, index=write.index):
        raise outside(resource["resourceType"])
    check_profiles(resource, id)  # after the access check (profiles/validator.py)
    return Planned(201, as_stored(write), [write], guards, location=True)


async def handle(request: Request, svc: Services) -> Response:
    type = request.path_params["type"]
    check_type(type)
    preflight(request)
    body = await read_json(request, svc.settings.max_body_bytes)
    resource = accept(body, type, svc.settings.max_depth, not svc.settings.reject_unknown_elements)
    resource.pop("id", None)  # create: the server assigns the id and ignores any in the body
    if_none_exist = request.headers.get("if-none-exist")
    access = await for_request(request, svc)
    done = await commit_planned(svc.store, audited(request, "create", lambda: plan(svc, access, resource, if_none_exist)))
    return resource_response(request, svc, done.stored, done.status, done.location, done.message)
