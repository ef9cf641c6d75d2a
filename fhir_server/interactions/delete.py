"""delete: DELETE [base]/[type]/[id] and conditional delete DELETE [base]/[type]?criteria.

History is kept: a deletion is a new version. Deleting a resource that other resources
reference is refused with 409 and the list of referrers, unless an administrator asks for
``_cascade=delete``, which deletes the referrers too (transitively) in the same transaction.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth.access import Access, for_request, outside
from fhir_server.errors import OperationOutcomeError, forbidden, invalid, issue, outcome
from fhir_server.http import json_response, negotiate, parse_etag, version_headers
from fhir_server.interactions.conditional import criteria, single_match
from fhir_server.services import Services
from fhir_server.storage.port import Guard
from fhir_server.write import Planned, as_stored, check_id, check_if_match, check_type, commit_planned, deletion

MAX_CASCADE = 1000


async def plan(svc: Services, access: Access, type: str, id: str, cascade: bool,
               if_match: int | None = None) -> Planned:
    rule = access.rule(type, "d")
    current = await svc.store.read(type, id)
    if current is not None and not current.deleted and not await access.permits(rule, current):
        raise outside(type)
    check_if_match(current, if_match, type, id)
    if current is None or current.deleted:
        return Planned(204, message=f"{type}/{id} does not exist or is already deleted")
    limit = svc.settings.max_referrers_listed
    referrers = await svc.store.referrers([f"{type}/{id}"], limit)
    if referrers and not cascade:
        raise still_referenced(f"{type}/{id}", referrers, limit)
    writes = [deletion(current)]
    if cascade:
        doomed = [f"{type}/{id}"]
        frontier = referrers
        while frontier:
            for ref in frontier:
                rtype, rid = ref.split("/", 1)
                ref_current = await svc.store.read(rtype, rid)
                if ref_current is not None and not ref_current.deleted and ref not in doomed:
                    doomed.append(ref)
                    writes.append(deletion(ref_current))
            if len(doomed) > MAX_CASCADE:
                raise invalid(f"_cascade=delete would delete more than {MAX_CASCADE} resources", "_cascade")
            frontier = [r for r in await svc.store.referrers(doomed, MAX_CASCADE) if r not in doomed]
    deleted = as_stored(writes[0])
    return Planned(204, deleted, writes, message=f"Deleted {type}/{id}" + (f" and {len(writes) - 1} referrer(s)" if cascade else ""))


def still_referenced(target: str, referrers: list[str], limit: int) -> OperationOutcomeError:
    """409: ``target`` cannot be deleted while ``referrers`` (at most ``limit`` listed) point to it."""
    more = "+" if len(referrers) >= limit else ""
    return OperationOutcomeError(
        [issue("conflict", f"{target} is referenced by {len(referrers)}{more} resource(s); delete or change them "
               "first, or ask for _cascade=delete", target)]
        + [issue("conflict", f"Referenced by {r}", r, severity="information") for r in referrers[:limit]],
        status=409,
    )


async def plan_conditional(svc: Services, access: Access, type: str, query_string: str, cascade: bool) -> Planned:
    query = criteria(type, query_string, "Conditional delete")
    found = await single_match(svc, query, "Conditional delete")
    if found is None:
        return Planned(204, message=f"No {type} matches {query}; nothing was deleted")
    planned = await plan(svc, access, type, found.id, cascade)
    planned.guards.append(Guard(query, frozenset({found.id})))
    return planned


async def _cascade(request: Request, svc: Services) -> bool:
    value = request.query_params.get("_cascade")
    if value is None:
        return False
    if value != "delete":
        raise invalid("_cascade supports only the value 'delete'", "_cascade")
    if not (await svc.principal(request)).admin:
        raise forbidden("Only an administrator may delete with _cascade=delete", "_cascade")
    return True


def respond(request: Request, done: Planned) -> Response:
    headers = version_headers(done.stored) if done.stored else {}
    if "return=OperationOutcome" in request.headers.get("prefer", ""):
        oo = outcome([issue("informational", done.message or "Deleted", severity="information")])
        return json_response(oo, 200, headers, negotiate(request))
    return Response(status_code=204, headers=headers)


async def handle(request: Request, svc: Services) -> Response:
    type, id = request.path_params["type"], request.path_params["id"]
    check_type(type)
    check_id(id)
    negotiate(request)
    cascade = await _cascade(request, svc)
    value = request.headers.get("if-match")
    if_match = parse_etag(value) if value else None
    access = await for_request(request, svc)
    return respond(request, await commit_planned(svc.store, audited(request, "delete",
                                                                    lambda: plan(svc, access, type, id, cascade, if_match))))


async def handle_conditional(request: Request, svc: Services) -> Response:
    type = request.path_params["type"]
    check_type(type)
    negotiate(request)
    cascade = await _cascade(request, svc)
    qs = "&".join(p for p in request.url.query.split("&") if not p.startswith("_cascade="))
    access = await for_request(request, svc)
    return respond(request, await commit_planned(svc.store, audited(request, "delete",
                                                                    lambda: plan_conditional(svc, access, type, qs, cascade))))
