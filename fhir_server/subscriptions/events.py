"""``$events``: ``GET|POST [base]/Subscription/{id}/$events``: replay of a Subscription's events.

Parameters (query or a Parameters body): ``eventsSinceNumber`` (first event, default the oldest
kept), ``eventsUntilNumber`` (last, default the newest), ``content`` (``empty``, ``id-only``,
``full-resource``; default the Subscription's). Answers a notification Bundle of type
``query-event``, at most ``MAX_EVENTS`` events; focus resources pass the same check against the
Subscription's grant as deliveries do. Only the Subscription's owner (or a system client) may call it.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import invalid
from fhir_server.http import json_response, read_json
from fhir_server.interactions.read import visible_current
from fhir_server.services import Services
from fhir_server.subscriptions.subscription import CONTENTS, MAX_EVENTS, parse


def _inputs(request: Request, body: dict | None) -> dict[str, str]:
    given = dict(request.query_params)
    if body is not None:
        if body.get("resourceType") != "Parameters":
            raise invalid("The body of $events must be a Parameters resource", "Parameters")
        for p in body.get("parameter") or ():
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            given[p.get("name")] = str(value) if value is not None else ""
    unknown = set(given) - {"eventsSinceNumber", "eventsUntilNumber", "content", "_format"}
    if unknown:
        raise invalid(f"$events takes eventsSinceNumber, eventsUntilNumber and content; not {', '.join(sorted(unknown))}",
                      sorted(unknown)[0])
    return given


def _number(given: dict, name: str) -> int | None:
    text = given.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise invalid(f"{name} must be a non-negative integer", name)
    return int(text)


async def handle(request: Request, svc: Services) -> Response:
    access = await for_request(request, svc)
    stored = await visible_current(svc, access, "Subscription", request.path_params["id"])
    body = await read_json(request, svc.settings.max_body_bytes) if request.method == "POST" else None
    given = _inputs(request, body)
    since, until = _number(given, "eventsSinceNumber"), _number(given, "eventsUntilNumber")
    content = given.get("content")
    if content is not None and content not in CONTENTS:
        raise invalid(f"content must be one of {', '.join(CONTENTS)}", "content")
    sub = parse(orjson.loads(stored.json))
    events = await svc.notify.state.events(sub.id, (since or 1) - 1, until, MAX_EVENTS)
    svc.auditor.record(request, "operation", [stored])
    body = await svc.notify.notification(sub, "query-event", events, content=content)
    return json_response(body)
