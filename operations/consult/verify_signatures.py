"""Composition/{id}/$verify-signatures: the status of each signature of a protocol (RU-57, RU-25).

Each signature (a Provenance, ``signatures``) is checked over the protocol's document as it is
now: ``valid`` when the JWS verifies with the key it was made with (the certificate in its
``x5c``, or the registered key recorded with it). Otherwise the document is rebuilt from the
versions the signature names (its Provenance's targets): when it verifies there the signature is
genuine but the document changed since (``document-changed``, naming what changed); else
``invalid``. Every attester who has not signed is listed as ``missing``. ``complete`` is true when
every attester has a valid signature. Code system: ``signature-status``.
"""

from __future__ import annotations

import base64

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.http import json_response, negotiate, version_number, wants_pretty
from fhir_server.services import Services
from fhir_server.storage.port import Stored
from operations.consult import canonical, document, signatures
from profiles import CANONICAL

STATUS = f"{CANONICAL}/CodeSystem/signature-status"


def _versions(provenance: dict) -> dict[str, int]:
    out = {}
    for t in provenance.get("target") or ():
        parts = str(t.get("reference") or "").split("/")
        number = version_number(parts[3]) if len(parts) == 4 and parts[2] == "_history" else None
        if number is not None:
            out[f"{parts[0]}/{parts[1]}"] = number
    return out


async def check(svc: Services, now: list[Stored], payload: bytes, provenance: dict) -> tuple[str, str]:
    """(status code, message) of one signature Provenance against the current document."""
    signature = provenance["signature"][0]
    try:
        token = signatures.parse(base64.b64decode(signature.get("data") or "").decode())
        key = signatures.recorded_key(token, signature)
    except Exception as exc:  # noqa: BLE001 - an OperationOutcomeError or a malformed record
        return "invalid", f"The signature or its key cannot be read: {exc}"
    if signatures.verifies(token, key, payload):
        return "valid", "The signature verifies over the current document"
    versions = _versions(provenance)

    async def then(ref: str) -> Stored | None:
        if ref not in versions:
            return None
        stored = await svc.store.vread(*ref.split("/"), versions[ref])
        return stored if stored is not None and not stored.deleted else None

    composition = await then(f"{now[0].type}/{now[0].id}")
    if composition is not None:
        signed = await document.assemble(composition, then)
        if signatures.verifies(token, key, canonical.signed_bytes(signed)):
            current = {f"{s.type}/{s.id}": s for s in now}
            changed = [f"{s.type}/{s.id}" for s in signed
                       if f"{s.type}/{s.id}" not in current or not canonical.same_content(s, current[f"{s.type}/{s.id}"])]
            changed += [ref for ref in current if ref not in versions]
            return "document-changed", f"The document changed after signing: {', '.join(changed)}"
    return "invalid", "The signature does not verify over the document, as it is or as it was signed"


def _part(name: str, key: str, value) -> dict:
    return {"name": name, key: value}


async def handle(request: Request, svc: Services) -> Response:
    media = negotiate(request)
    composition = await document.load(request, svc)
    now = await document.assemble(composition, document.current(svc))
    svc.auditor.record(request, "operation", [composition])
    payload = canonical.signed_bytes(now)
    protocol = orjson.loads(composition.json)
    signed = await signatures.of(svc, composition.id)
    out, valid = [], set()
    for stored, provenance in signed:
        status, message = await check(svc, now, payload, provenance)
        signature = provenance["signature"][0]
        signer = signatures.signer_of(provenance)
        if status == "valid":
            valid.add(signer)
        parts = [_part("signer", "valueReference", {"reference": signer}),
                 _part("type", "valueCoding", signature["type"][0]), _part("when", "valueInstant", signature["when"]),
                 _part("status", "valueCoding", {"system": STATUS, "code": status}),
                 _part("message", "valueString", message),
                 _part("provenance", "valueReference", {"reference": f"Provenance/{stored.id}"})]
        info = signatures.certificate_of(signature)
        parts += [_part(f"certificate-{k}", "valueString", info[k]) for k in ("serial", "subject", "issuer", "kid")
                  if info.get(k)]
        if info.get("notBefore"):
            parts.append(_part("certificate-validity", "valuePeriod", {"start": info["notBefore"], "end": info["notAfter"]}))
        out.append({"name": "signature", "part": parts})
    attesters = [a["party"]["reference"] for a in protocol.get("attester") or ()]
    signers = {signatures.signer_of(p) for _, p in signed}
    out += [{"name": "signature", "part": [_part("signer", "valueReference", {"reference": a}),
                                           _part("status", "valueCoding", {"system": STATUS, "code": "missing"})]}
            for a in attesters if a not in signers]
    body = {"resourceType": "Parameters",
            "parameter": [_part("complete", "valueBoolean", set(attesters) <= valid), *out]}
    return json_response(body, 200, {"ETag": f'W/"{composition.version}"'}, media, wants_pretty(request))
