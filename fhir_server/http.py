"""HTTP details of the FHIR REST API: content negotiation, body reading, response headers."""

from __future__ import annotations

import functools
from datetime import date

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import OperationOutcomeError, invalid, issue, structure, too_long
from fhir_server.storage.port import Stored

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


def header(request: Request, name: bytes) -> str | None:
    """One request header (``name`` lower-case bytes, as ASGI gives them), without building a
    Headers object: reads use this on every request."""
    for k, v in request.scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def query_param(request: Request, name: str) -> str | None:
    """One query parameter; free when the request has no query string (the common read)."""
    return request.query_params.get(name) if request.scope["query_string"] else None


def negotiate(request: Request) -> str:
    """The response media type, from ``_format`` or ``Accept``; XML is not served (406)."""
    fmt = query_param(request, "_format")
    if fmt:
        fmt = fmt.split(";")[0].strip().lower()
        if fmt in JSON_FORMATS:
            return FHIR_JSON if fmt in ("json", "application/fhir+json") else fmt
        raise not_acceptable(f"_format={fmt} is not supported; this server speaks FHIR JSON")
    accept = header(request, b"accept")
    if not accept:
        return FHIR_JSON
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    for k in kinds:
        if k in ("application/fhir+json", "*/*", "application/*"):
            return FHIR_JSON
        if k in JSON_TYPES:
            return k
    if any(k in XML_FORMATS for k in kinds) or kinds:
        # A client that accepts only something else (e.g. XML) gets 406, not JSON it did not ask for.
        if any(k.startswith(("text/html", "text/plain")) for k in kinds):
            return FHIR_JSON
        raise not_acceptable(f"Accept: {accept} is not supported; this server speaks FHIR JSON")
    return FHIR_JSON


def not_acceptable(diagnostics: str) -> OperationOutcomeError:
    return OperationOutcomeError([issue("not-supported", diagnostics, "_format")], status=406)


async def read_json(request: Request, max_bytes: int, accept_types: tuple[str, ...] = JSON_TYPES) -> object:
    """The request body parsed as JSON; 415 for another content type, 413 past ``max_bytes``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in accept_types:
        raise OperationOutcomeError(
            [issue("not-supported", f"Content-Type '{ctype or '(none)'}' is not supported; send {FHIR_JSON}")],
            status=415,
        )
    body = await read_body(request, max_bytes)
    if not body.strip():
        raise structure("The request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise structure(f"The body is not valid JSON: {exc}") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_long(f"The body ({declared} bytes) is larger than the limit of {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_long(f"The body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


MAX_VERSION = 2**63 - 1  # what the stores can hold (SQLite INTEGER, BSON int64)


def version_number(text: str) -> int | None:
    """A version id as an int, or None when ``text`` is not one (non-ASCII digits, too large)."""
    if not (text.isascii() and text.isdigit()):
        return None
    n = int(text)
    return n if n <= MAX_VERSION else None


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etag(value: str) -> int:
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    n = version_number(v.strip('"'))
    if n is None:
        raise invalid(f"If-Match '{value}' is not a version ETag such as W/\"3\"", "If-Match")
    return n


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=4096)
def http_date(instant: str) -> str:
    """RFC 7231 date of a stored UTC instant ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (on every read: keep it cheap)."""
    d = date(int(instant[0:4]), int(instant[5:7]), int(instant[8:10]))
    return f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year:04d} {instant[11:19]} GMT"


def version_headers(stored: Stored) -> dict[str, str]:
    return {"ETag": etag(stored.version), "Last-Modified": http_date(stored.last_updated)}


def json_response(content: bytes | dict, status: int = 200, headers: dict | None = None,
                  media_type: str = FHIR_JSON, pretty: bool = False) -> Response:
    if isinstance(content, dict):
        content = orjson.dumps(content, option=orjson.OPT_INDENT_2 if pretty else 0)
    elif pretty:
        content = orjson.dumps(orjson.loads(content), option=orjson.OPT_INDENT_2)
    return BytesResponse(content, status, headers, f"{media_type}; charset=utf-8")


class BytesResponse(Response):
    """A Starlette Response for bytes already in hand: the raw headers are built directly (reads
    send one per request; Response's general header handling costs more than the lookup)."""

    def __init__(self, body: bytes, status: int, headers: dict | None, media_type: str):
        self.body = body
        self.status_code = status
        self.background = None
        raw = [(b"content-length", str(len(body)).encode()), (b"content-type", media_type.encode())]
        if headers:
            raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw


def wants_pretty(request: Request) -> bool:
    return query_param(request, "_pretty") == "true"


def base_url(request: Request, configured: str) -> str:
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"
