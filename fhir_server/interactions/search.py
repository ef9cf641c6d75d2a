"""search: GET [base]/[type]?params and POST [base]/[type]/_search (form body).

Unknown parameters are ignored and reported in an OperationOutcome entry under
``Prefer: handling=lenient`` (the default), and refused with 400 under ``handling=strict``.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.bundle_bytes import bundle, entry
from fhir_server.errors import OperationOutcomeError, invalid, issue, outcome, structure
from fhir_server.http import base_url, json_response, negotiate, read_body, wants_pretty
from fhir_server.interactions.history import count_param, paging_links
from fhir_server.interactions.respond import shaper
from fhir_server.search import execute
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from fhir_server.storage.port import SearchPage
from fhir_server.summary import parse_summary
from fhir_server.write import check_type
from operations.consult import worklists

TOTAL_MODES = ("none", "estimate", "accurate")
FORM = "application/x-www-form-urlencoded"


async def handle(request: Request, svc: Services) -> Response:
    type = request.path_params["type"]
    check_type(type)
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM:
            raise OperationOutcomeError([issue("not-supported", f"POST _search takes an {FORM} body", "Content-Type")],
                                        status=415)
        body = await read_body(request, svc.settings.max_body_bytes)
        try:
            items += parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise structure("The form body is not UTF-8") from None
    return await respond(request, svc, type, items)


async def respond(request: Request, svc: Services, type: str, items: list[tuple[str, str]]) -> Response:
    strict = "handling=strict" in request.headers.get("prefer", "")
    access = await for_request(request, svc)
    if any(k == "_query" for k, _ in items):  # a named query: a worklist (SPB-2.2)
        items = await worklists.expand(svc, access, type, items)
    rule = access.rule(type, "s")
    query = parse_query(type, items, strict=strict)
    extra = await access.restrict(rule, [])
    limits = parse_query(type, extra, strict=True).clauses if extra else ()
    if limits:
        query = dataclasses.replace(query, clauses=query.clauses + limits)
    params = dict(items)
    summary = parse_summary(params.get("_summary"))
    total_mode = params.get("_total")
    if total_mode not in (None, *TOTAL_MODES):
        raise invalid(f"_total must be one of {', '.join(TOTAL_MODES)}", "_total")
    count = 0 if summary == "count" else count_param(params.get("_count"), svc)
    # Counting costs a second query: done when asked (_total, _summary=count, _count=0).
    # Without it, a first page that holds every match still states its total, which is free.
    counted = total_mode in ("estimate", "accurate") or (total_mode is None and count == 0)
    cursor = params.get("_cursor")
    page = await execute.search(svc.store, query, count=count, cursor=cursor, total=counted,
                                bound=svc.settings.max_chain_ids, limit=access.limit)
    if page.total is None and total_mode is None and not cursor and not page.next_cursor:
        page = SearchPage(page.entries, len(page.entries), None)
    base = base_url(request, svc.settings.base_url)
    kept = [(k, v) for k, v in items if k != "_cursor"]
    links = paging_links(f"{base}/{type}", kept, cursor, page.next_cursor, page.prev_cursor, count)
    envelope = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        envelope["total"] = page.total
    envelope["link"] = links
    shown_included: list = []
    shape = shaper(request)
    entries = [entry({"fullUrl": f"{base}/{type}/{s.id}", "search": {"mode": "match"}}, shape(s.json))
               for s in page.entries]
    warnings = [issue("not-supported", f"Search parameter '{name}' is not supported for {type} and was ignored",
                      name, severity="warning") for name in query.unknown]
    if query.includes and page.entries:
        included = await execute.include(svc.store, query, page.entries, svc.settings.max_includes)
        shown_included = await access.visible_only(included.resources)
        entries += [entry({"fullUrl": f"{base}/{s.type}/{s.id}", "search": {"mode": "include"}}, shape(s.json))
                    for s in shown_included]
        warnings += [issue("too-costly", f"Not included: {note}", "_include", severity="warning")
                     for note in included.left_out]
    svc.auditor.record(request, "search-type", [*page.entries, *shown_included],
                       query=f"{type}?{urlencode(items + extra)}")
    if warnings:
        entries.append(entry({"search": {"mode": "outcome"}}, outcome(warnings)))
    body = bundle(envelope, entries)
    return json_response(body, 200, None, negotiate(request), wants_pretty(request))

