"""``$status``: ``GET [base]/Subscription/{id}/$status`` and ``GET [base]/Subscription/$status[?id=...]``.

A searchset Bundle of SubscriptionStatus Parameters (type ``query-status``), one per Subscription
the caller may read: its status, topic, events since it started, and the error while failing.
Without ``id``: every Subscription the caller may read.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.http import json_response
from fhir_server.interactions.read import visible_current
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from fhir_server.subscriptions import notification
from fhir_server.subscriptions.subscription import parse
from fhir_server.write import now_instant


async def _entry(svc: Services, stored) -> dict:
    resource = orjson.loads(stored.json)
    sub = parse(resource)
    since_start = (await svc.notify.state.counters(sub.id))[0]
    params = notification.status_parameters(svc.settings.base_url.rstrip("/"), sub, sub.status, "query-status",
                                            since_start, [], resource.get("error"))
    return {"fullUrl": f"urn:uuid:{params['id']}", "resource": params, "search": {"mode": "match"}}


async def handle(request: Request, svc: Services) -> Response:
    access = await for_request(request, svc)
    if "id" in request.path_params:
        found = [await visible_current(svc, access, "Subscription", request.path_params["id"])]
    else:
        ids = request.query_params.getlist("id")
        items = [("_id", ",".join(ids))] if ids else []
        rule = access.rule("Subscription", "s")
        query = parse_query("Subscription", await access.restrict(rule, items), strict=True)
        page = await svc.store.search(query, count=svc.settings.max_count, cursor=None, total=False)
        found = page.entries
    entries = [await _entry(svc, s) for s in found]
    svc.auditor.record(request, "operation", found)
    return json_response({"resourceType": "Bundle", "type": "searchset", "timestamp": now_instant(),
                          "total": len(entries), "entry": entries})
