"""Composition/{id}/$sign: sign a consultation protocol in two steps (RU-57, RU-25, KZ-3).

``GET`` answers the exact bytes to sign (``canonical``: RFC 8785 JSON of the protocol's document,
``application/json``) with the Composition's version as ETag. The signer signs them with their
own key and ``POST``s the detached JWS (``signature``), optionally with its E1762 ``type`` and,
for a practitioner with several roles among the attesters, the ``role`` that signs; an
``If-Match`` with the ETag makes sure the protocol did not change in between (412 otherwise).

Who signs: each consultant attester (mode professional) in their own name; then, last, the
organisation's seal (mode official): a system client's token (``system/`` scope, no fhirUser),
whose key is the Organization's (``signatures``). The server checks the JWS over the current
document, stores the signature as a Provenance and, when it is the last one, completes the
consultation in the same transaction (``completion``); otherwise it writes the Task's
``lastModified``, so that concurrent signatures and ``$complete`` calls, which all expect the
Task version they read, are serialised. Answer: 201 with the Provenance.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.auth.access import for_request
from fhir_server.errors import conflict, forbidden, unprocessable
from fhir_server.http import etag, header, parse_etag
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.services import Services
from fhir_server.write import Planned, as_stored, check_id, check_if_match, commit_planned, new_id, new_version
from operations import parameters
from operations.consult import caller, canonical, completion, document, signatures
from operations.consult.codes import business_code
from operations.consult.conclusion import output_of
from operations.consult.deadline import instant

DEFINITION = parameters.definition("composition-sign")
PERSONAL = frozenset(signatures.TYPES) - {signatures.VALIDATION}
TYPE = "Parameters.parameter.where(name='type')"


async def get(request: Request, svc: Services) -> Response:
    composition = await document.load(request, svc)
    resources = await document.assemble(composition, document.current(svc))
    svc.auditor.record(request, "operation", resources)
    body = canonical.signed_bytes(resources)
    return Response(body, 200, headers={"ETag": etag(composition.version)}, media_type="application/json")


async def _read(svc: Services, ref: str | None) -> dict | None:
    if not ref or ref.count("/") != 1:
        return None
    stored = await svc.store.read(*ref.split("/"))
    return orjson.loads(stored.json) if stored is not None and not stored.deleted else None


def _type(params: dict, allowed: frozenset[str], default: str) -> str:
    given = parameters.one(params, "type")
    if given is None:
        return default
    if given.get("system") != signatures.E1762 or given.get("code") not in allowed:
        raise unprocessable(f"This signer's signature type is one of {signatures.E1762}: {', '.join(sorted(allowed))}",
                            TYPE)
    return given["code"]


async def _task(svc: Services, composition_id: str, protocol: dict):
    ref = next((d.get("reference") for e in protocol.get("event") or () for d in e.get("detail") or ()
                if str(d.get("reference", "")).startswith("Task/")), None)
    stored = await svc.store.read("Task", ref.split("/")[1]) if ref else None
    task = orjson.loads(stored.json) if stored is not None and not stored.deleted else {}
    business = business_code(task)
    if (task.get("status"), business) != ("in-progress", "awaiting-signatures") \
            or output_of(task, "protocol") != f"Composition/{composition_id}":
        raise conflict(f"Composition/{composition_id} is not awaiting signatures (its consultation {ref} is "
                       f"{task.get('status')}, {business})", "Task.status")
    return stored


async def post(request: Request, svc: Services) -> Response:
    id = request.path_params["id"]
    check_id(id)
    preflight(request)
    params = await parameters.read(request, DEFINITION, svc.settings.max_body_bytes, svc.settings.max_depth)
    if_match = header(request, b"if-match")
    access = await for_request(request, svc)
    access.rule("Provenance", "c")
    system = access.who.fhir_user is None
    if system and not access.rule("Composition", "u").system:
        raise forbidden("A protocol is signed by its consultants, or sealed by a system client", "fhirUser")
    me = None if system else await caller.of(svc, access)
    compact = parameters.one(params, "signature")
    token = signatures.parse(compact)

    async def plan() -> Planned:
        composition = await document.load(request, svc)
        check_if_match(composition, parse_etag(if_match) if if_match else None, "Composition", id)
        protocol = orjson.loads(composition.json)
        task_s = await _task(svc, id, protocol)
        signed = await signatures.of(svc, id)
        done = {signatures.signer_of(p) for _, p in signed}
        persons = [a["party"]["reference"] for a in protocol.get("attester") or () if a.get("mode") == "professional"]
        official = [a["party"]["reference"] for a in protocol.get("attester") or () if a.get("mode") == "official"]
        if system:
            pending = [p for p in persons if p not in done]
            if pending:
                raise conflict(f"The organisation's seal comes last: {', '.join(pending)} must sign first",
                               "Composition.attester")
            signer, on_behalf = official[0], None
            kind = _type(params, frozenset({signatures.VALIDATION}), signatures.VALIDATION)
            holder = await _read(svc, signer)
        else:
            mine = [p for p in persons if p in me.refs]
            wanted = (parameters.one(params, "role") or {}).get("reference")
            if wanted is not None:
                mine = [p for p in mine if p == wanted]
            if not mine:
                raise forbidden(f"{me.user} is not an attester of Composition/{id} "
                                f"({', '.join(persons)} sign it)", "fhirUser")
            signer = next((p for p in mine if p not in done), mine[0])
            role = me.roles.get(signer) or await _read(svc, signer) or {}
            on_behalf = caller.organization(role)
            # the chair (the first author) signs as author, the other members as co-participants
            kind = _type(params, PERSONAL, signatures.AUTHOR if signer == persons[0] else signatures.CO_PARTICIPANT)
            holder = await _read(svc, (role.get("practitioner") or {}).get("reference") or signer)
        if signer in done:
            raise conflict(f"{signer} has signed Composition/{id} already", "Composition.attester")
        key = signatures.key_of(token, holder)
        now = signatures.now()
        if not signatures.valid_at(key, now):
            raise unprocessable(f"The signer's certificate is not valid now (valid {key.certificate.get('notBefore')} "
                                f"to {key.certificate.get('notAfter')})", signatures.SIGNATURE)
        resources = await document.assemble(composition, document.current(svc))
        if not signatures.verifies(token, key, canonical.signed_bytes(resources)):
            raise unprocessable(f"The signature does not verify over the current document of Composition/{id} with "
                                "the signer's key (GET $sign gives the bytes to sign)", signatures.SIGNATURE)
        provenance = signatures.provenance(composition, resources[1:], signer, on_behalf, kind, compact,
                                           key.certificate, now, access.who.client_id if system else None)
        provenance["target"].append({"reference": f"Task/{task_s.id}/_history/{task_s.version + 1}"})
        prov_id = new_id()
        await consultation.stamp(svc.store, provenance, prov_id)
        write = new_version(provenance, prov_id, 1, "POST", instant(now))
        if set(persons + official) <= done | {signer}:  # the last signature
            writes = await completion.complete(svc, task_s, composition, provenance["agent"][0], now)
        else:
            writes = [await completion.touch(svc, task_s, instant(now))]
        return Planned(201, as_stored(write), [write, *writes], location=True)

    done = await commit_planned(svc.store, audited(request, "operation", plan))
    return resource_response(request, svc, done.stored, done.status, done.location)
