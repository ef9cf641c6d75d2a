"""WADO-RS: studies, series, instances, frames, bulk data and rendered images, streamed; and
metadata, served from ``cache`` with an ETag.

Everything but metadata passes through as raw bytes as it arrives (``relay.streamed``, by
``splice`` in the kernel when it can): the PACS's multipart boundary, transfer syntax and
content type are the caller's, a study of hundreds of MB never sits in memory. ``Accept`` is
passed on, so transfer syntax negotiation is between the caller and the PACS. Metadata is
parsed to rewrite its URLs (RetrieveURL, BulkDataURI) to the proxy's own.
"""

from __future__ import annotations

import re

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import audit
from dicomweb.access import check_uid, require_study
from dicomweb.cache import matches
from dicomweb.proxy import require
from dicomweb.qido import MAX_JSON_BYTES, query_items
from dicomweb.rewrite import PREFIX, Rewriter, own_base
from dicomweb.relay import streamed
from dicomweb.upstream import bad_gateway, failure, query_string
from fhir_server.auth.access import for_request
from fhir_server.errors import invalid
from fhir_server.services import Services

DICOM_JSON = "application/dicom+json"
FRAMES_RE = re.compile(r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$")
BULK_RE = re.compile(r"^[A-Za-z0-9._/-]{1,256}$")
CACHE_CONTROL = "private, no-cache"
FORWARDED = ("accept",)


def _checked_path(request: Request) -> tuple[str, str]:
    """The study UID and the path under the PACS's root, every path parameter checked."""
    params = request.path_params
    study = params["study"]
    check_uid(study, "StudyInstanceUID")
    if "series" in params:
        check_uid(params["series"], "SeriesInstanceUID")
    if "instance" in params:
        check_uid(params["instance"], "SOPInstanceUID")
    if "frames" in params and not FRAMES_RE.match(params["frames"]):
        raise invalid("frames must be a comma-separated list of frame numbers from 1", "frames")
    if "bulk" in params and (not BULK_RE.match(params["bulk"]) or ".." in params["bulk"]):
        raise invalid("Not a bulk data path", "bulk")
    return study, request.scope["path"].removeprefix(PREFIX)


async def retrieve(request: Request, svc: Services) -> Response:
    proxy = require(svc)
    study, path = _checked_path(request)
    access = await for_request(request, svc)
    _, found = await require_study(request, access, study, "wado-rs", proxy.seen)
    headers = {k: request.headers[k] for k in FORWARDED if k in request.headers}
    items = query_items(request)
    answer = await proxy.relay.get(path + ("?" + query_string(items) if items else ""), headers)
    if not 200 <= answer.status_code < 300:
        audit.record(request, svc, access.who, "wado-rs", found, "4", f"The PACS answered {answer.status_code}")
        raise failure(answer.status_code, await answer.read(), f"WADO-RS {path}")
    audit.record(request, svc, access.who, "wado-rs", found)
    return streamed(answer, Rewriter(proxy.relay.root, own_base(request, svc.settings)))


async def metadata(request: Request, svc: Services) -> Response:
    proxy = require(svc)
    study, path = _checked_path(request)
    access = await for_request(request, svc)
    _, found = await require_study(request, access, study, "wado-rs", proxy.seen)
    base = own_base(request, svc.settings)
    key = base + path
    entry = proxy.cache.get(key)
    if entry is None:
        answer = await proxy.relay.get(path, {"Accept": DICOM_JSON}, keep=True)
        if answer.status_code != 200:
            audit.record(request, svc, access.who, "wado-rs", found, "4", f"The PACS answered {answer.status_code}")
            raise failure(answer.status_code, await answer.read(), f"WADO-RS {path}")
        raw = await answer.read_all(MAX_JSON_BYTES, f"WADO-RS {path}")
        try:
            body = Rewriter(proxy.relay.root, base).json(orjson.loads(raw))
        except orjson.JSONDecodeError:
            raise bad_gateway(f"The PACS's answer to WADO-RS {path} is not JSON") from None
        entry = proxy.cache.put(key, study, orjson.dumps(body))
    audit.record(request, svc, access.who, "wado-rs", found)
    headers = {"ETag": entry.etag, "Cache-Control": CACHE_CONTROL}
    if matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    return Response(entry.body, 200, headers=headers, media_type=DICOM_JSON)
