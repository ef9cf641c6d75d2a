"""update: PUT [base]/[type]/[id] (create-on-update allowed), and conditional update PUT [base]/[type]?criteria."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.subscriptions import subscription
from fhir_server.auth.access import Access, for_request, outside
from fhir_server.errors import invalid
from fhir_server.http import parse_etag, read_json
from fhir_server.interactions.conditional import criteria, single_match
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.services import Services
from fhir_server.storage.port import Guard
from fhir_server.write import (
    Planned, accept, as_stored, check_id, check_if_match, check_profiles, check_type, commit_planned, new_id,
    new_version,
)
from operations.consult import chat, guard


async def plan(svc: Services, access: Access, type: str, id: str, resource: dict, if_match: int | None,
               method: str = "PUT") -> Planned:
    rule = access.rule(type, "u")
    current = await svc.store.read(type, id)
    created = current is None or current.deleted
    if created:
        rule = access.rule(type, "c")
    elif not await access.permits(rule, current):
        raise outside(type)
    check_if_match(current, if_match, type, id)
    guard.refuse_workflow_change(current, resource)  # a ConsultTask's state changes only through its operations
    version = current.version + 1 if current else 1
    await consultation.stamp(svc.store, resource, id)
    await chat.admit(svc, access, current, resource)  # a consultation chat message is kept as posted
    subscription.stamp(access.who, current, resource)
    write = new_version(resource, id, version, method, checked=False)
    if not await access.permits(rule, resource=resource, index=write.index):
        raise outside(type)
    check_profiles(resource, id)  # after the access check (profiles/validator.py)
    return Planned(201 if created else 200, as_stored(write), [write], location=created)


async def plan_conditional(svc: Services, access: Access, type: str, query_string: str, resource: dict,
                           if_match: int | None) -> Planned:
    query = criteria(type, query_string, "Conditional update")
    found = await single_match(svc, query, "Conditional update")
    if found is None:
        id = resource.get("id") or new_id()
        planned = await plan(svc, access, type, id, resource, if_match)
        planned.guards.append(Guard(query, frozenset()))
        return planned
    if resource.get("id") not in (None, found.id):
        raise invalid(f"The body's id '{resource['id']}' is not the id of the matching resource {type}/{found.id}",
                      f"{type}.id")
    planned = await plan(svc, access, type, found.id, resource, if_match)
    planned.guards.append(Guard(query, frozenset({found.id})))
    return planned


async def handle(request: Request, svc: Services) -> Response:
    type, id = request.path_params["type"], request.path_params["id"]
    check_type(type)
    check_id(id)
    preflight(request)
    resource = await _body(request, svc, type)
    if "id" not in resource:
        raise invalid("An update must carry the resource's id in the body", f"{type}.id")
    if resource["id"] != id:
        raise invalid(f"The body's id '{resource['id']}' differs from the id '{id}' in the URL", f"{type}.id")
    if_match = _if_match(request)
    access = await for_request(request, svc)
    done = await commit_planned(svc.store, audited(request, "update", lambda: plan(svc, access, type, id, resource, if_match)))
    return resource_response(request, svc, done.stored, done.status, done.location)


async def handle_conditional(request: Request, svc: Services) -> Response:
    type = request.path_params["type"]
    check_type(type)
    preflight(request)
    resource = await _body(request, svc, type)
    if_match = _if_match(request)
    qs = request.url.query
    access = await for_request(request, svc)
    done = await commit_planned(svc.store, audited(request, "update",
                                                   lambda: plan_conditional(svc, access, type, qs, resource, if_match)))
    return resource_response(request, svc, done.stored, done.status, done.location)


async def _body(request: Request, svc: Services, type: str) -> dict:
    body = await read_json(request, svc.settings.max_body_bytes)
    return accept(body, type, svc.settings.max_depth, not svc.settings.reject_unknown_elements)


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    return parse_etag(value) if value else None
