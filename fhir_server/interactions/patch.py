"""patch: PATCH [base]/[type]/[id] (and conditional PATCH [base]/[type]?criteria).

``application/json-patch+json`` bodies are JSON Patch (RFC 6902); ``application/fhir+json``
bodies are FHIRPath Patch (a Parameters resource). The patched resource is validated like any
other write and must keep its resourceType and id.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import invalid, not_found, unprocessable
from fhir_server.http import JSON_TYPES, parse_etag, read_json
from fhir_server.interactions.conditional import criteria, single_match
from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.subscriptions import subscription
from fhir_server.auth.access import Access, for_request, outside
from fhir_server.interactions.read import visible_current
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from fhir_server.patch.json_patch import apply_json_patch
from fhir_server.services import Services
from fhir_server.storage.port import Guard
from fhir_server.write import (
    Planned, accept, as_stored, check_depth, check_id, check_if_match, check_profiles, check_type, commit_planned,
    new_version,
)
from operations.consult import chat, guard

JSON_PATCH = "application/json-patch+json"
# Levels a patch document adds around the values it carries (Parameters.parameter.part.value...).
PATCH_DEPTH = 8


def patched(resource: dict, kind: str, document: object) -> dict:
    if kind == JSON_PATCH:
        return apply_json_patch(resource, document)
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise invalid("A FHIRPath Patch body must be a Parameters resource", "Parameters")
    return apply_fhirpath_patch(resource, document)


async def plan(svc: Services, access: Access, type: str, id: str, kind: str, document: object,
               if_match: int | None) -> Planned:
    stored = await visible_current(svc, access, type, id, "u")
    check_if_match(stored, if_match, type, id)
    result = patched(orjson.loads(stored.json), kind, document)
    if result.get("resourceType") != type or result.get("id") != id:
        raise unprocessable("A patch may not change the resource's type or id", f"{type}.id")
    accept(result, type, svc.settings.max_depth, not svc.settings.reject_unknown_elements)
    guard.refuse_workflow_change(stored, result)  # a ConsultTask's state changes only through its operations
    await consultation.stamp(svc.store, result, id)
    await chat.admit(svc, access, stored, result)  # a consultation chat message is kept as posted
    subscription.stamp(access.who, stored, result)
    write = new_version(result, id, stored.version + 1, "PATCH", checked=False)
    if not await access.permits(access.rule(type, "u"), resource=result, index=write.index):
        raise outside(type)
    check_profiles(result, id)  # after the access check (profiles/validator.py)
    return Planned(200, as_stored(write), [write])


async def _document(request: Request, svc: Services) -> tuple[str, object]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    document = await read_json(request, svc.settings.max_body_bytes, (JSON_PATCH, *JSON_TYPES))
    check_depth(document, svc.settings.max_depth + PATCH_DEPTH, "Patch" if ctype == JSON_PATCH else "Parameters")
    return (JSON_PATCH if ctype == JSON_PATCH else "fhirpath"), document


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    return parse_etag(value) if value else None


async def handle(request: Request, svc: Services) -> Response:
    type, id = request.path_params["type"], request.path_params["id"]
    check_type(type)
    check_id(id)
    preflight(request)
    kind, document = await _document(request, svc)
    if_match = _if_match(request)
    access = await for_request(request, svc)
    done = await commit_planned(svc.store, audited(request, "patch", lambda: plan(svc, access, type, id, kind, document, if_match)))
    return resource_response(request, svc, done.stored, done.status)


async def handle_conditional(request: Request, svc: Services) -> Response:
    type = request.path_params["type"]
    check_type(type)
    preflight(request)
    kind, document = await _document(request, svc)
    if_match = _if_match(request)
    qs = request.url.query
    access = await for_request(request, svc)

    async def plan_conditional() -> Planned:
        query = criteria(type, qs, "Conditional patch")
        found = await single_match(svc, query, "Conditional patch")
        if found is None:
            raise not_found(f"No {type} matches {query}", "Conditional patch")
        planned = await plan(svc, access, type, found.id, kind, document, if_match)
        planned.guards.append(Guard(query, frozenset({found.id})))
        return planned

    done = await commit_planned(svc.store, audited(request, "patch", plan_conditional))
    return resource_response(request, svc, done.stored, done.status)
