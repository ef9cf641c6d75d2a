"""read: GET [base]/[type]/[id] -> the current version's stored bytes."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import Access, for_request
from fhir_server.errors import gone, not_found
from fhir_server.http import header, version_headers
from fhir_server.interactions.respond import resource_response
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from fhir_server.write import check_type


async def visible_current(svc: Services, access: Access, type: str, id: str, letter: str = "r") -> Stored:
    """The current version if the caller may see it; a resource they may not see answers like a
    missing one (404), and so does a deletion of one they could not see."""
    check_type(type)
    rule = access.rule(type, letter)
    stored = await svc.store.read(type, id)
    if stored is not None and stored.deleted and (rule.system or not rule.limited):
        raise gone(f"{type}/{id} was deleted", f"{type}/{id}", headers=version_headers(stored))
    if stored is None or stored.deleted or not await access.permits(rule, stored):
        raise not_found(f"{type}/{id} is not known", f"{type}/{id}")
    return stored


async def handle(request: Request, svc: Services) -> Response:
    p = request.path_params
    stored = await visible_current(svc, await for_request(request, svc), p["type"], p["id"])
    svc.auditor.record(request, "read", [stored])
    if not_modified(request, stored):
        return Response(status_code=304, headers=version_headers(stored))
    return resource_response(request, svc, stored)


def not_modified(request: Request, stored: Stored) -> bool:
    """Conditional read (RFC 9110 13.1): If-None-Match, else If-Modified-Since, says the client has this version."""
    if_none_match = header(request, b"if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or f'"{stored.version}"' in tags
    if_modified_since = header(request, b"if-modified-since")
    if not if_modified_since:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    modified = datetime.fromisoformat(stored.last_updated[:19] + "+00:00")  # HTTP dates have whole seconds
    return modified <= since
