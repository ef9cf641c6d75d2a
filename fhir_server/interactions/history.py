"""history: GET [base]/[type]/[id]/_history, [base]/[type]/_history and [base]/_history.

Newest version first; ``_since``, ``_at``, ``_count`` and keyset paging through ``_cursor``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.bundle_bytes import bundle, entry
from fhir_server.auth.access import Access, for_request
from fhir_server.errors import invalid, not_found
from fhir_server.http import base_url, etag, http_date, json_response, negotiate, wants_pretty
from fhir_server.interactions.respond import shaper
from fhir_server.search.normalize import date_range
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from fhir_server.write import check_type


def count_param(raw: str | None, svc: Services) -> int:
    """``_count``: the default when absent, capped at the maximum."""
    if raw is None:
        return svc.settings.default_count
    if not (raw.isascii() and raw.isdigit()):
        raise invalid("_count must be a non-negative integer", "_count")
    return min(int(raw), svc.settings.max_count)


def paging_links(path: str, params: list[tuple[str, str]], cursor: str | None, next_cursor: str | None,
                 prev_cursor: str | None, count: int) -> list[dict]:
    """``self`` (this page: ``params`` and ``cursor``) and, when the results span pages, ``first``
    (the search without a cursor), ``previous`` and ``next`` (FHIR R4 http.html#paging)."""

    def url(cur: str | None) -> str:
        query = urlencode([*params, *([("_cursor", cur)] if cur else [])])
        return path + ("?" + query if query else "")

    links = [{"relation": "self", "url": url(cursor)}]
    if count and (cursor or next_cursor):
        links.append({"relation": "first", "url": url(None)})
        if prev_cursor:
            links.append({"relation": "previous", "url": url(prev_cursor)})
        if next_cursor:
            links.append({"relation": "next", "url": url(next_cursor)})
    return links


def _instant(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    rng = date_range(raw)
    if rng is None:
        raise invalid(f"{name} must be a FHIR instant such as 2024-05-03T10:00:00Z", name)
    return rng[0] if name == "_since" else rng[1]


def history_entry(base: str, s: Stored, resource: bytes | dict | None) -> bytes:
    method = s.method
    url = s.type if method == "POST" else f"{s.type}/{s.id}"
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    fields = {
        "fullUrl": f"{base}/{s.type}/{s.id}",
        "request": {"method": method, "url": url},
        "response": {"status": status, "etag": etag(s.version), "lastModified": s.last_updated},
    }
    return entry(fields, None if s.deleted else resource)


async def handle(request: Request, svc: Services) -> Response:
    type = request.path_params.get("type")
    id = request.path_params.get("id")
    access = await for_request(request, svc)
    if type:
        check_type(type)
        access.rule(type, "r" if id else "s")
    if id:
        current = await svc.store.read(type, id)
        if current is None or not (current.deleted or await access.visible(current)):
            raise not_found(f"{type}/{id} is not known", f"{type}/{id}")
    count = count_param(request.query_params.get("_count"), svc)
    since, at = _instant(request, "_since"), _instant(request, "_at")
    cursor = request.query_params.get("_cursor")
    page = await svc.store.history(type, id, since=since, at=at, count=count, cursor=cursor)
    base = base_url(request, svc.settings.base_url)
    path = "/".join(p for p in (base, type, id, "_history") if p)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    links = paging_links(path, params, cursor, page.next_cursor, page.prev_cursor, count)
    # Each version is shown only when the caller may see it (for a deletion: the type's scope).
    shown = [s for s in page.entries if await _visible(access, s, "r" if id else "s")]
    shape = shaper(request)
    entries = [history_entry(base, s, shape(s.json) if not s.deleted else None) for s in shown]
    svc.auditor.record(request, "history-instance" if id else "history-type" if type else "history-system", shown)
    body = bundle({"resourceType": "Bundle", "type": "history", "link": links}, entries)
    headers = {"Last-Modified": http_date(page.entries[0].last_updated)} if page.entries else None
    return json_response(body, 200, headers, negotiate(request), wants_pretty(request))


async def _visible(access: Access, s: Stored, letter: str) -> bool:
    if s.deleted:
        try:
            rule = access.rule(s.type, letter)
        except Exception:  # noqa: BLE001 - no grant on the type
            return False
        return rule.system or not rule.limited  # as a read of a deleted resource (read.visible_current)
    return await access.visible(s, letter)
