"""One entry of a batch or transaction Bundle: its request parsed, planned, and answered."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from fhir_server.auth.access import Access
from fhir_server.errors import OperationOutcomeError, invalid
from fhir_server.http import etag, parse_etag
from fhir_server.interactions import create, delete, patch, update
from fhir_server.services import Services
from fhir_server.write import Planned, accept, check_depth, check_id, check_type

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Transaction processing order (FHIR R4 3.1.0.11.2): DELETE, POST, PUT/PATCH, GET/HEAD.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    url: str
    type: str | None
    id: str | None
    query: str
    full_url: str | None
    resource: dict | None
    if_match: int | None
    if_none_exist: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def parse_entry(index: int, raw: object, base: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise invalid("A Bundle entry must be an object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise invalid("A batch/transaction entry needs request.method and request.url", f"{where}.request")
    method, url = request.get("method"), request.get("url")
    if method not in METHODS:
        raise invalid(f"request.method must be one of {', '.join(METHODS)}", f"{where}.request.method")
    if not isinstance(url, str) or not url:
        raise invalid("request.url is required", f"{where}.request.url")
    if url.startswith(base + "/"):
        url = url[len(base) + 1:]
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    type = segments[0] if segments else None
    id = segments[1] if len(segments) > 1 and not segments[1].startswith(("_", "$")) else None
    if type:
        check_type(type)
    resource = raw.get("resource")
    if method in ("POST", "PUT") and resource is None:
        raise invalid(f"A {method} entry needs a resource", f"{where}.resource")
    for key, value in (("fullUrl", raw.get("fullUrl")), ("request.ifMatch", request.get("ifMatch")),
                       ("request.ifNoneExist", request.get("ifNoneExist"))):
        if value is not None and not isinstance(value, str):
            raise invalid(f"{key} must be a string", f"{where}.{key}")
    try:
        if_match = parse_etag(request["ifMatch"]) if request.get("ifMatch") else None
    except OperationOutcomeError as exc:
        exc.issues[0]["expression"] = [f"{where}.request.ifMatch"]
        raise
    return Entry(index, method, url, type, id, parts.query, raw.get("fullUrl"), resource, if_match,
                 request.get("ifNoneExist"))


def check_resource(svc: Services, e: Entry) -> dict:
    """A POST/PUT entry's resource validated; a PATCH entry's document checked for depth."""
    try:
        if e.method == "PATCH":
            check_depth(e.resource, svc.settings.max_depth + patch.PATCH_DEPTH, f"{e.where}.resource")
            return e.resource
        return accept(e.resource, e.type, svc.settings.max_depth, not svc.settings.reject_unknown_elements)
    except OperationOutcomeError as exc:
        raise located(exc, e) from None


# Expressions of the single-resource interactions -> where the same thing sits in a Bundle entry.
ENTRY_EXPRESSIONS = {
    "If-Match": "request.ifMatch", "If-None-Exist": "request.ifNoneExist", "ifNoneExist": "request.ifNoneExist",
    "resourceType": "resource.resourceType", "request.url": "request.url", "Conditional update": "request.url",
    "Conditional delete": "request.url", "Conditional patch": "request.url",
}


def located(exc: OperationOutcomeError, e: Entry) -> OperationOutcomeError:
    """The error with the entry named: diagnostics prefixed, expressions under ``Bundle.entry[i]``.

    ``Patient.name`` becomes ``Bundle.entry[i].resource.name``, ``If-Match`` ``Bundle.entry[i].request.ifMatch``;
    an expression with no place in the entry (e.g. a referrer ``Observation/1``) is kept after ``Bundle.entry[i]``.
    """
    if getattr(exc, "located", False):
        return exc
    for i in exc.issues:
        i["diagnostics"] = f"{e.where}: {i.get('diagnostics', '')}"
        exprs = []
        for x in i.get("expression") or []:
            if x.startswith("Bundle."):
                exprs.append(x)
            elif e.type and x.startswith(e.type + "."):
                exprs.append(f"{e.where}.resource.{x.split('.', 1)[1]}")
            elif x in ENTRY_EXPRESSIONS:
                exprs.append(f"{e.where}.{ENTRY_EXPRESSIONS[x]}")
            else:
                exprs += [e.where, x]
        i["expression"] = list(dict.fromkeys(exprs)) or [e.where]
    exc.located = True
    return exc


async def plan_write(svc: Services, access: Access, e: Entry, resource: dict | None, assigned_id: str | None) -> Planned:
    """Plan a write entry. ``resource`` has its references already resolved."""
    if e.method == "POST":
        resource.pop("id", None)
        return await create.plan(svc, access, resource, e.if_none_exist, id=assigned_id)
    if e.method == "PUT":
        if e.id:
            check_id(e.id, f"{e.where}.request.url")
            if resource.get("id") not in (None, e.id):
                raise invalid(f"The resource id '{resource.get('id')}' differs from the id in request.url",
                              f"{e.where}.resource.id")
            resource["id"] = e.id
            return await update.plan(svc, access, e.type, e.id, resource, e.if_match)
        if not e.query:
            raise invalid("A PUT entry's request.url must be Type/id or Type?criteria", f"{e.where}.request.url")
        if assigned_id and "id" not in resource:
            resource["id"] = assigned_id
        return await update.plan_conditional(svc, access, e.type, e.query, resource, e.if_match)
    if e.method == "DELETE":
        if e.id:
            return await delete.plan(svc, access, e.type, e.id, cascade=False)
        return await delete.plan_conditional(svc, access, e.type, e.query, cascade=False)
    if e.method == "PATCH":
        if not e.id:
            raise invalid("PATCH entries need request.url Type/id", f"{e.where}.request.url")
        kind, document = _patch_document(e)
        check_depth(document, svc.settings.max_depth + patch.PATCH_DEPTH, f"{e.where}.resource")
        return await patch.plan(svc, access, e.type, e.id, kind, document, e.if_match)
    raise invalid(f"{e.method} is not a write", f"{e.where}.request.method")


def _patch_document(e: Entry) -> tuple[str, object]:
    """A PATCH entry carries a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch."""
    r = e.resource
    if isinstance(r, dict) and r.get("resourceType") == "Binary" and r.get("contentType") == patch.JSON_PATCH:
        try:
            return patch.JSON_PATCH, orjson.loads(base64.b64decode(r.get("data", ""), validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise invalid("Binary.data must be a base64-encoded JSON Patch document",
                          f"{e.where}.resource.data") from None
    return "fhirpath", r


def response_fields(planned: Planned, base: str) -> dict:
    fields: dict = {"status": STATUS_TEXT.get(planned.status, str(planned.status))}
    s = planned.stored
    if s is not None:
        if planned.location:
            fields["location"] = f"{s.type}/{s.id}/_history/{s.version}"
        fields["etag"] = etag(s.version)
        fields["lastModified"] = s.last_updated
    return fields
