"""Serving our artifacts (``profiles.artifacts``) over the REST API, read-only.

Routes (``fhir_server.routes``) for the artifact types (StructureDefinition, SearchParameter,
OperationDefinition, CodeSystem, ValueSet) come before the generic ones:

- read and vread (version 1) of an artifact's id answer the artifact; other ids go to the store;
- a search answers the store's matches and, on its first page, the artifacts that match
  (``profiles.matching``) before them, counted in ``total``;
- PUT, PATCH and DELETE of an artifact's id are 405; the write path refuses the same in Bundles,
  and any write of a conformance resource claiming a canonical URL under our base
  (``artifacts.guard``).

The caller needs the scope to read (search) the type, as for any resource.
"""

from __future__ import annotations

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.bundle_bytes import bundle, entry
from fhir_server.errors import not_found
from fhir_server.http import base_url, json_response, negotiate, version_headers, version_number, wants_pretty
from fhir_server.interactions import delete, patch, read, search, update, vread
from fhir_server.interactions.respond import resource_response, shaper
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from profiles import artifacts, matching


class ArtifactType(Convertor):
    """A path segment naming one of the artifact types."""

    regex = "|".join(artifacts.TYPES)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("artifacttype", ArtifactType())


async def handle_read(request: Request, svc: Services) -> Response:
    p = request.path_params
    stored = artifacts.get(p["type"], p["id"])
    if stored is None:
        return await read.handle(request, svc)
    (await for_request(request, svc)).rule(p["type"], "r")
    svc.auditor.record(request, "read", [stored])
    if read.not_modified(request, stored):
        return Response(status_code=304, headers=version_headers(stored))
    return resource_response(request, svc, stored)


async def handle_vread(request: Request, svc: Services) -> Response:
    p = request.path_params
    stored = artifacts.get(p["type"], p["id"])
    if stored is None:
        return await vread.handle(request, svc)
    (await for_request(request, svc)).rule(p["type"], "r")
    if version_number(p["vid"]) != 1:
        raise not_found(f"{p['type']}/{p['id']} has no version {p['vid']}", f"{p['type']}/{p['id']}/_history/{p['vid']}")
    svc.auditor.record(request, "vread", [stored])
    return resource_response(request, svc, stored)


async def handle_search(request: Request, svc: Services) -> Response:
    """The store's answer, with the matching artifacts first on the first page."""
    type = request.path_params["type"]
    items = list(request.query_params.multi_items())
    response = await search.respond(request, svc, type, items)
    if any(k == "_cursor" for k, _ in items):
        return response
    found = [artifacts.get(*key) for key in matching.matching(parse_query(type, items))]
    if not found:
        return response
    page = orjson.loads(response.body)
    base = base_url(request, svc.settings.base_url)
    if "total" in page:
        page["total"] += len(found)
    counting = request.query_params.get("_summary") == "count" or request.query_params.get("_count") == "0"
    shape = shaper(request)
    listed = [] if counting else [
        entry({"fullUrl": f"{base}/{s.type}/{s.id}", "search": {"mode": "match"}}, shape(s.json)) for s in found]
    rest = [orjson.dumps(e) for e in page.pop("entry", [])]
    body = bundle(page, listed + rest)
    return json_response(body, 200, None, negotiate(request), wants_pretty(request))


def _refusing(handler):
    async def endpoint(request: Request, svc: Services) -> Response:
        p = request.path_params
        if artifacts.get(p["type"], p["id"]) is not None:
            raise artifacts.read_only(p["type"], p["id"])
        return await handler(request, svc)

    return endpoint


handle_update = _refusing(update.handle)
handle_patch = _refusing(patch.handle)
handle_delete = _refusing(delete.handle)
