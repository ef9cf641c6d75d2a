"""read: GET [base]/[type]/[id] -> the current version's stored bytes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import gone, not_found
from fhir_server.http import version_headers
from fhir_server.interactions.respond import resource_response
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from fhir_server.write import check_type


async def current(svc: Services, type: str, id: str) -> Stored:
    """The current version; 404 when it never existed, 410 when it was deleted."""
    check_type(type)
    stored = await svc.store.read(type, id)
    if stored is None:
        raise not_found(f"{type}/{id} is not known", f"{type}/{id}")
    if stored.deleted:
        raise gone(f"{type}/{id} was deleted", f"{type}/{id}", headers=version_headers(stored))
    return stored


async def handle(request: Request, svc: Services) -> Response:
    p = request.path_params
    stored = await current(svc, p["type"], p["id"])
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and if_none_match.strip().removeprefix("W/") == f'"{stored.version}"':
        return Response(status_code=304, headers=version_headers(stored))
    return resource_response(request, svc, stored)
