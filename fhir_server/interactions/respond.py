"""Building the response of a read or write: body, ETag/Last-Modified/Location, ``Prefer``."""

from __future__ import annotations

from typing import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import issue, outcome
from fhir_server.http import base_url, header, json_response, negotiate, version_headers, wants_pretty
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from fhir_server.summary import parse_elements, parse_summary, subset


def resource_response(request: Request, svc: Services, stored: Stored, status: int = 200,
                      location: bool = False, message: str | None = None) -> Response:
    """A resource version as the response, honouring Prefer: return=minimal|representation|OperationOutcome."""
    media = negotiate(request)
    headers = version_headers(stored)
    if location:
        headers["Location"] = f"{base_url(request, svc.settings.base_url)}/{stored.type}/{stored.id}/_history/{stored.version}"
    prefer = header(request, b"prefer") or ""
    if "return=minimal" in prefer:
        return Response(b"", status_code=status, headers=headers)
    if "return=OperationOutcome" in prefer:
        oo = outcome([issue("informational", message or f"{stored.type}/{stored.id} version {stored.version}",
                            severity="information")])
        return json_response(oo, status, headers, media, wants_pretty(request))
    return json_response(shaped(request, stored.json), status, headers, media, wants_pretty(request))


def preflight(request: Request) -> None:
    """Refuse, before anything is written, a response that could not be given (406 XML, bad _summary)."""
    negotiate(request)
    parse_summary(request.query_params.get("_summary"))


def shaped(request: Request, body: bytes) -> bytes | dict:
    """Stored bytes as they are, or the ``_summary``/``_elements`` subset when asked."""
    return shaper(request)(body)


def _as_stored(body: bytes) -> bytes:
    return body


def shaper(request: Request) -> Callable[[bytes], bytes | dict]:
    """``shaped`` for many resources of one request (a Bundle's): its parameters read once."""
    if not request.scope["query_string"]:
        return _as_stored
    summary = parse_summary(request.query_params.get("_summary"))
    elements = parse_elements(request.query_params.get("_elements"))
    if summary in (None, "false") and not elements:
        return _as_stored
    return lambda body: subset(orjson.loads(body), summary, elements)
