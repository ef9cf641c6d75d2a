"""batch: POST [base] with a Bundle of type batch. Each entry succeeds or fails on its own."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request

from fhir_server.audit import audited
from fhir_server.auth.access import Access, for_request
from fhir_server.bundle_bytes import entry
from fhir_server.errors import OperationOutcomeError, exception, gone, invalid, not_found
from fhir_server.http import etag, version_number
from fhir_server.interactions import search
from fhir_server.interactions.bundle_entry import Entry, check_resource, located, parse_entry, plan_write, response_fields
from fhir_server.interactions.read import visible_current
from fhir_server.references import resolve_references
from fhir_server.services import Services
from fhir_server.write import commit_planned

log = logging.getLogger(__name__)
SUBTYPES = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


async def run(request: Request, svc: Services, raw_entries: list, base: str) -> list[bytes]:
    minimal = "return=minimal" in request.headers.get("prefer", "")
    access = await for_request(request, svc)
    out = []
    for i, raw in enumerate(raw_entries):
        try:
            e = parse_entry(i, raw, base)
            if e.method in ("GET", "HEAD"):
                out.append(await read_entry(request, svc, access, e))
                continue
            resource = e.resource
            if resource is not None and e.method in ("POST", "PUT", "PATCH"):
                resource = check_resource(svc, e)

            async def plan():
                resolved = (await resolve_references(svc, resource, {}, f"{e.where}.resource")
                            if resource is not None and e.method in ("POST", "PUT") else resource)
                return await plan_write(svc, access, e, resolved, None)

            planned = await commit_planned(svc.store, audited(request, SUBTYPES[e.method], plan))
            fields = {"response": response_fields(planned, base)}
            s = planned.stored
            if s is not None and not s.deleted:
                fields = {"fullUrl": f"{base}/{s.type}/{s.id}", **fields}
            out.append(entry(fields, None if minimal or s is None or s.deleted else s.json))
        except OperationOutcomeError as exc:
            out.append(error_entry(exc))
        except Exception:  # noqa: BLE001 - one entry's failure must not fail the batch
            log.exception("batch entry %d failed", i)
            out.append(error_entry(exception("Internal error processing this entry")))
    return out


def error_entry(exc: OperationOutcomeError) -> bytes:
    return entry({"response": {"status": str(exc.status), "outcome": exc.outcome()}}, None)


async def read_entry(request: Request, svc: Services, access: Access, e: Entry) -> bytes:
    """A GET entry: read, vread or search, answered inside the response Bundle."""
    try:
        segments = [s for s in e.url.split("?")[0].split("/") if s]
        if len(segments) == 2:
            s = await visible_current(svc, access, e.type, e.id)
            svc.auditor.record(request, "read", [s])
            return entry({"response": {"status": "200 OK", "etag": etag(s.version), "lastModified": s.last_updated}},
                         s.json)
        if len(segments) == 4 and segments[2] == "_history":
            version = version_number(segments[3])
            rule = access.rule(e.type, "r")
            s = await svc.store.vread(e.type, e.id, version) if version is not None else None
            if s is not None and not s.deleted and not await access.permits(rule, s):
                s = None
            if s is None:
                raise not_found(f"{e.type}/{e.id} has no version {segments[3]}", e.url)
            if s.deleted:
                raise gone(f"Version {segments[3]} of {e.type}/{e.id} is a deletion", e.url)
            svc.auditor.record(request, "vread", [s])
            return entry({"response": {"status": "200 OK", "etag": etag(s.version)}}, s.json)
        if len(segments) == 1:
            resp = await search.respond(request, svc, e.type, parse_qsl(e.query, keep_blank_values=True))
            return entry({"response": {"status": "200 OK"}}, resp.body)
        raise invalid(f"GET {e.url} is not supported inside a Bundle", f"{e.where}.request.url")
    except OperationOutcomeError as exc:
        raise located(exc, e) from None
