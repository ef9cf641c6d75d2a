"""QIDO-RS: search for studies, series and instances, limited to the studies the caller may see.

The caller's query is passed on (``includefield``, ``limit``, ``offset``, ``fuzzymatching``,
attribute filters) with its query string rebuilt by ``upstream.query_string``. A caller who
does not see everything gets a ``StudyInstanceUID`` list of the visible studies added (an
intersection when the query names studies itself), so the PACS pages over visible studies
only; past ``MAX_PUSHED`` visible studies the proxy filters the answer and applies
``limit``/``offset`` itself. Every answer is checked study by study again before it is sent.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import audit
from dicomweb.access import Visible, check_uid, require_study, visible
from dicomweb.proxy import require
from dicomweb.rewrite import Rewriter, own_base
from dicomweb.upstream import bad_gateway, failure, query_string
from fhir_server.auth.access import for_request
from fhir_server.errors import invalid
from fhir_server.services import Services

MAX_PUSHED = 500
MAX_JSON_BYTES = 256 << 20  # a QIDO-RS or metadata answer larger than this is the PACS's fault (502)
STUDY_KEYS = ("StudyInstanceUID", "0020000D")
DICOM_JSON = "application/dicom+json"
# PS3.18 8.3.4.1: a server that does not do fuzzy matching says so.
FUZZY_WARNING = '299 telemed: "The fuzzymatching parameter is not supported. Only literal matching has been performed."'


def query_items(request: Request) -> list[tuple[str, str]]:
    """The query as (name, value) pairs, percent-decoded once (``+`` is a space, as clients send it)."""
    raw = request.scope["query_string"].decode("latin-1")
    items = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            items.append((unquote_plus(name), unquote_plus(value)))
    return items


async def studies(request: Request, svc: Services) -> Response:
    return await _search(request, svc, "/studies", None)


async def series(request: Request, svc: Services) -> Response:
    study = request.path_params.get("study")
    return await _search(request, svc, f"/studies/{study}/series" if study else "/series", study)


async def instances(request: Request, svc: Services) -> Response:
    study, series_uid = request.path_params.get("study"), request.path_params.get("series")
    if series_uid is not None:
        check_uid(series_uid, "SeriesInstanceUID")
        path = f"/studies/{study}/series/{series_uid}/instances"
    else:
        path = f"/studies/{study}/instances" if study else "/instances"
    return await _search(request, svc, path, study)


async def _search(request: Request, svc: Services, path: str, study: str | None) -> Response:
    proxy = require(svc)
    access = await for_request(request, svc)
    items = query_items(request)
    query = path + ("?" + request.scope["query_string"].decode("latin-1") if request.scope["query_string"] else "")
    page: tuple[int, int] | None = None
    if study is not None:
        seen, _ = await require_study(request, access, study, "qido-rs", proxy.seen)
    else:
        seen = await visible(access, proxy.seen)
        items, page = _restrict(items, seen)
        if items is None:
            audit.record(request, svc, access.who, "qido-rs", {}, query=query)
            return _answer([], items_fuzzy(request))
    answer = await proxy.relay.get(path + "?" + query_string(items) if items else path, {"Accept": DICOM_JSON},
                                   keep=True)
    if answer.status_code == 204:
        answer.close()
        body = []
    elif answer.status_code != 200:
        raise failure(answer.status_code, await answer.read(), f"QIDO-RS {path}")
    else:
        body = _parse(await answer.read_all(MAX_JSON_BYTES, f"QIDO-RS {path}"), f"QIDO-RS {path}")
    if not isinstance(body, list):
        body = []
    if not seen.everything:
        body = [d for d in body if _visible_result(d, seen, study is not None or page is None)]
    if page is not None:
        offset, limit = page
        body = body[offset:offset + limit] if limit else body[offset:]
    Rewriter(proxy.relay.root, own_base(request, svc.settings)).json(body)
    found = {uid: seen.studies.get(uid) for uid in (_study_of(d) for d in body) if uid}
    audit.record(request, svc, access.who, "qido-rs", found, query=query)
    return _answer(body, items_fuzzy(request))


def _parse(raw: bytes, what: str):
    try:
        return orjson.loads(raw or b"[]")
    except orjson.JSONDecodeError:
        raise bad_gateway(f"The PACS's answer to {what} is not JSON") from None


def items_fuzzy(request: Request) -> bool:
    return any(n == "fuzzymatching" and v.lower() == "true" for n, v in query_items(request))


def _answer(body: list, fuzzy: bool) -> Response:
    headers = {"Warning": FUZZY_WARNING} if fuzzy else None
    return Response(orjson.dumps(body), 200, headers=headers, media_type=DICOM_JSON)


def _study_of(dataset) -> str | None:
    value = (dataset.get("0020000D") or {}).get("Value") if isinstance(dataset, dict) else None
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None


def _visible_result(dataset, seen: Visible, pushed: bool) -> bool:
    uid = _study_of(dataset)
    if uid is None:
        return pushed  # the PACS was asked for visible studies only; the answer just omits the UID
    return seen.sees(uid)


def _restrict(items: list[tuple[str, str]], seen: Visible):
    """The query limited to the visible studies: (items, None) pushed to the PACS; (items,
    (offset, limit)) when the proxy must filter and page itself; (None, None) when nothing can match."""
    if seen.everything:
        return items, None
    asked: set[str] | None = None
    rest = []
    for name, value in items:
        if name in STUDY_KEYS:
            values = {v for v in value.split(",") if v}
            asked = values if asked is None else asked & values
        else:
            rest.append((name, value))
    allowed = set(seen.studies) if asked is None else set(seen.studies) & asked
    if not allowed:
        return None, None
    if len(allowed) <= MAX_PUSHED:
        return rest + [("StudyInstanceUID", ",".join(sorted(allowed)))], None
    offset, limit = 0, 0
    kept = []
    for name, value in items:
        if name in ("offset", "limit"):
            try:
                n = int(value)
            except ValueError:
                raise invalid(f"{name} must be a non-negative integer", name) from None
            if n < 0:
                raise invalid(f"{name} must be a non-negative integer", name)
            offset, limit = (n, limit) if name == "offset" else (offset, n)
        else:
            kept.append((name, value))
    return kept, (offset, limit)
