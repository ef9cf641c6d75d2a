"""Composition/{id}/$document: the protocol as a FHIR document (a Bundle of type document).

The Bundle holds the Composition first, then every resource it references: subject, encounter,
authors, attesters, custodian and the entries of its sections (SPB-3.6 "download"; FHIR R4
$document). For each PractitionerRole among them its Practitioner and Organization follow, so
the consultants' names and organisations travel with the document (KZ-3). ``Composition.event``
(the Task) is workflow, not content, and is not included. A reference that cannot be resolved
is left out. ``assemble`` serves ``$sign`` and ``$verify-signatures`` too: the signed bytes are
those of the assembled resources (``canonical``).
"""

from __future__ import annotations

import uuid
from typing import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import not_found, unprocessable
from fhir_server.http import base_url, json_response, negotiate, wants_pretty
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from fhir_server.write import check_id, now_instant
from operations.consult.conclusion import is_protocol

Resolve = Callable[[str], Awaitable[Stored | None]]


def _refs(composition: dict) -> list[str]:
    out: list = [composition.get("subject"), composition.get("encounter"), *(composition.get("author") or ()),
                 *[a.get("party") for a in composition.get("attester") or ()], composition.get("custodian")]

    def sections(items) -> None:
        for s in items or ():
            out.extend(s.get("author") or ())
            out.extend(s.get("entry") or ())
            sections(s.get("section"))

    sections(composition.get("section"))
    return [r["reference"] for r in out if isinstance(r, dict) and isinstance(r.get("reference"), str)
            and r["reference"].count("/") == 1]


def current(svc: Services) -> Resolve:
    async def resolve(ref: str) -> Stored | None:
        type, id = ref.split("/")
        stored = await svc.store.read(type, id)
        return stored if stored is not None and not stored.deleted else None

    return resolve


async def assemble(composition: Stored, resolve: Resolve) -> list[Stored]:
    """The document's resources as stored: the Composition, then what it references."""
    found: dict[str, Stored] = {f"Composition/{composition.id}": composition}
    refs = _refs(orjson.loads(composition.json))
    n = 0
    while n < len(refs):
        ref = refs[n]
        n += 1
        if ref in found:
            continue
        stored = await resolve(ref)
        if stored is None:
            continue
        found[ref] = stored
        if stored.type == "PractitionerRole":
            role = orjson.loads(stored.json)
            refs += [r["reference"] for r in (role.get("practitioner"), role.get("organization"))
                     if isinstance(r, dict) and isinstance(r.get("reference"), str) and r["reference"].count("/") == 1]
    return list(found.values())


async def load(request: Request, svc: Services) -> Stored:
    """The ConsultProtocol Composition of the path, if the caller may read it (404 otherwise)."""
    id = request.path_params["id"]
    check_id(id)
    access = await for_request(request, svc)
    rule = access.rule("Composition", "r")
    stored = await svc.store.read("Composition", id)
    if stored is None or stored.deleted or not await access.permits(rule, stored):
        raise not_found(f"Composition/{id} is not known", f"Composition/{id}")
    if not is_protocol(orjson.loads(stored.json)):
        raise unprocessable(f"Composition/{id} is not a consultation protocol (ConsultProtocol)", f"Composition/{id}")
    return stored


def bundle(resources: list[Stored], base: str) -> dict:
    composition = resources[0]
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/Composition/{composition.id}/_history/{composition.version}")
    return {"resourceType": "Bundle", "meta": {"lastUpdated": now_instant()},
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{ident}"},
            "type": "document", "timestamp": now_instant(),
            "entry": [{"fullUrl": f"{base}/{s.type}/{s.id}", "resource": orjson.loads(s.json)} for s in resources]}


async def handle(request: Request, svc: Services) -> Response:
    media = negotiate(request)
    composition = await load(request, svc)
    resources = await assemble(composition, current(svc))
    svc.auditor.record(request, "operation", resources)  # what was disclosed, the patient's record included
    body = bundle(resources, base_url(request, svc.settings.base_url))
    return json_response(body, 200, {"ETag": f'W/"{composition.version}"'}, media, wants_pretty(request))
