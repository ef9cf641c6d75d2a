"""vread: GET [base]/[type]/[id]/_history/[vid] -> that version's stored bytes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import gone, not_found
from fhir_server.http import version_headers, version_number
from fhir_server.interactions.respond import resource_response
from fhir_server.services import Services
from fhir_server.write import check_type


async def handle(request: Request, svc: Services) -> Response:
    p = request.path_params
    type, id, vid = p["type"], p["id"], p["vid"]
    check_type(type)
    access = await for_request(request, svc)
    rule = access.rule(type, "r")
    version = version_number(vid)
    stored = await svc.store.vread(type, id, version) if version is not None else None
    if stored is not None and not stored.deleted and not await access.permits(rule, stored):
        stored = None
    if stored is None:
        raise not_found(f"{type}/{id} has no version {vid}", f"{type}/{id}/_history/{vid}")
    if stored.deleted:
        raise gone(f"Version {vid} of {type}/{id} is a deletion", f"{type}/{id}/_history/{vid}",
                   headers=version_headers(stored))
    svc.auditor.record(request, "vread", [stored])
    return resource_response(request, svc, stored)
