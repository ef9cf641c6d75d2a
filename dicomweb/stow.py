"""STOW-RS: ``POST /dicomweb/studies[/{study}]``, optionally to a consultation
(``?request=ServiceRequest/{id}``).

Order: the body is spooled and split, each part's UIDs read (400 on a bad body, before the
PACS sees anything); the caller's right to every study in it is checked; for a consultation,
every instance's PatientID must be an identifier of the request's patient (422 otherwise,
``link.check_patient`` has the rule); the instances are stored in the PACS; only then, for a
consultation, the ImagingStudy and the link are written (``link``) in one transaction, for
the instances the PACS stored. A PACS failure leaves no ImagingStudy behind; a failed FHIR
write leaves instances in the PACS that no link makes visible (storing again repairs it:
the PACS accepts the same instances again).

The answer is the PACS's store result (DICOM JSON, URLs made the proxy's) with a result for
every part: stored ones in ReferencedSOPSequence, the others in FailedSOPSequence (``_per_part``
adds those the PACS left out), and PS3.18's status: 200 all stored, 202 some, 409 none.

Who may store what: a ``system/`` grant on ImagingStudy anything; otherwise each study must
be visible to the caller already, or, with ``request``, be new to the PACS and the server
(a caller cannot attach itself to someone else's study by uploading one instance of it).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import audit, link
from dicomweb.access import Visible, check_uid, fhir_side, visible
from dicomweb.proxy import Proxy, require
from dicomweb.rewrite import Rewriter, own_base
from dicomweb.stow_parts import Head, boundary_of, heads, size_of, split, spool, upload
from dicomweb.qido import MAX_JSON_BYTES
from dicomweb.upstream import bad_gateway, failure, query_string
from fhir_server.auth.access import for_request
from fhir_server.errors import forbidden, invalid
from fhir_server.services import Services

DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
PROCESSING_FAILURE = 0x0110


def _request_id(value: str | None) -> str | None:
    if value is None:
        return None
    type, _, id = value.partition("/")
    if type != "ServiceRequest" or not id or "/" in id:
        raise invalid("request must be a consultation's ServiceRequest/{id}", "request")
    return id


async def store(request: Request, svc: Services) -> Response:
    proxy = require(svc)
    target = request.path_params.get("study")
    if target is not None:
        check_uid(target, "StudyInstanceUID")
    request_id = _request_id(request.query_params.get("request"))
    content_type = request.headers.get("content-type")
    boundary = boundary_of(content_type)
    access = await for_request(request, svc)
    seen = await visible(access)
    sr = None
    if request_id is not None:
        try:
            sr = await link.check_request(access, request_id)
        except Exception as exc:
            audit.record(request, svc, access.who, "stow-rs", {}, "4", str(exc))
            raise
    body = await spool(request, svc.settings.dicomweb_max_stow_bytes)
    try:
        parts = await asyncio.to_thread(split, body, boundary)
        found = await asyncio.to_thread(heads, body, parts)
        await _authorize(request, svc, access, proxy, seen, found, request_id)
        if sr is not None:
            try:
                await link.check_patient(svc, sr, found)
            except Exception as exc:
                audit.record(request, svc, access.who, "stow-rs", {h.study: None for h in found}, "4", str(exc))
                raise
        path = "/studies" + (f"/{target}" if target else "")
        response = await proxy.upstream.open(
            "POST", path, (), {"Content-Type": content_type, "Accept": DICOM_JSON,
                               "Content-Length": str(size_of(body))}, upload(body))
        raw = await proxy.upstream.read(response)
    finally:
        body.close()
    result = _dataset(raw)
    if result is None or not (200 <= response.status_code < 300 or response.status_code in (400, 409)):
        audit.record(request, svc, access.who, "stow-rs", {h.study: None for h in found}, "4",
                     f"The PACS answered {response.status_code}")
        if 200 <= response.status_code < 300:
            raise bad_gateway(f"The PACS's answer to STOW-RS {path} is not a DICOM JSON store result")
        raise failure(response.status_code, raw, f"STOW-RS {path}")
    status = _per_part(result, found, response.status_code)
    stored = _stored(result, found)
    for uid in {h.study for h in stored}:
        proxy.cache.forget_study(uid)
    headers = {}
    if request_id is not None and stored:
        try:
            refs = await link.attach(request, svc, access, request_id, stored)
        finally:
            proxy.seen.clear()  # new links: every caller's visible studies are looked up again
        fhir = own_base(request, svc.settings).removesuffix("/dicomweb") + "/fhir"
        headers["Link"] = ", ".join(f'<{fhir}/{r}>; rel="related"' for r in refs)
    Rewriter(proxy.relay.root, own_base(request, svc.settings)).json(result)
    studies = {h.study: seen.studies.get(h.study) for h in found}
    audit.record(request, svc, access.who, "stow-rs", studies, "0" if status == 200 else "4",
                 None if status == 200 else f"The PACS stored {len(stored)} of {len(found)} instances")
    return Response(orjson.dumps(result), status, headers=headers, media_type=DICOM_JSON)


def _dataset_list(raw: bytes) -> list:
    try:
        found = orjson.loads(raw) if raw.strip() else []
    except orjson.JSONDecodeError:
        raise bad_gateway("The PACS's answer to QIDO-RS /studies is not JSON") from None
    return found if isinstance(found, list) else []


def _dataset(raw: bytes) -> dict | None:
    try:
        result = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None
    return result if isinstance(result, dict) else None


def _per_part(result: dict, found: list[Head], pacs_status: int) -> int:
    """Complete the store result with every part, and the status PS3.18 gives it (10.5.3):
    200 all stored, 202 some stored and some not, 409 none (400 when the PACS said so). A part
    the PACS neither stored nor listed as failed (Orthanc 1.10 leaves it out when it cannot
    read it) is added to FailedSOPSequence with reason 0110H (processing failure). Orthanc
    answers 409 to an upload it partly stored; that becomes 202."""
    stored, failed = _uids(result, REFERENCED_SOP_SEQUENCE), _uids(result, FAILED_SOP_SEQUENCE)
    missing = [h for h in found if h.instance not in stored and h.instance not in failed]
    if missing:
        sequence = result.setdefault(FAILED_SOP_SEQUENCE, {"vr": "SQ"})
        items = sequence.setdefault("Value", [])
        for h in missing:
            item = {REFERENCED_SOP_INSTANCE_UID: {"vr": "UI", "Value": [h.instance]},
                    FAILURE_REASON: {"vr": "US", "Value": [PROCESSING_FAILURE]}}
            if h.sop_class:
                item = {REFERENCED_SOP_CLASS_UID: {"vr": "UI", "Value": [h.sop_class]}, **item}
            items.append(item)
    kept = sum(1 for h in found if h.instance in stored)
    if kept == len(found) and not failed and not missing:
        return 200
    if kept:
        return 202
    return 400 if pacs_status == 400 else 409


def _uids(result: dict, tag: str) -> set[str]:
    items = (result.get(tag) or {}).get("Value") or []
    out = set()
    for item in items:
        value = (item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") if isinstance(item, dict) else None
        if value and isinstance(value[0], str):
            out.add(value[0])
    return out


def _stored(result: dict, found: list[Head]) -> list[Head]:
    """The parts the PACS lists as stored (ReferencedSOPSequence)."""
    uids = _uids(result, REFERENCED_SOP_SEQUENCE)
    return [h for h in found if h.instance in uids]


async def _authorize(request, svc, access, proxy: Proxy, seen: Visible, found: list[Head],
                     request_id: str | None) -> None:
    if seen.everything:
        return
    denied = []
    for uid in sorted({h.study for h in found}):
        if seen.sees(uid):
            continue
        if request_id is None or await _exists(svc, proxy, uid):
            denied.append(uid)
    if denied:
        reason = ("Storing into studies the caller may not see" if request_id is not None else
                  "Storing a new study needs ?request=ServiceRequest/{id} (the consultation it belongs to)")
        audit.record(request, svc, access.who, "stow-rs", {u: None for u in denied}, "4", reason)
        raise forbidden(f"{reason}: {', '.join(denied)}", "StudyInstanceUID")


async def _exists(svc, proxy: Proxy, uid: str) -> bool:
    """Whether the server or the PACS already knows study ``uid``."""
    if await fhir_side(svc, uid) is not None:
        return True
    answer = await proxy.relay.get("/studies?" + query_string([("StudyInstanceUID", uid)]), {"Accept": DICOM_JSON},
                                   keep=True)
    if answer.status_code == 204:
        answer.close()
        return False
    if answer.status_code != 200:
        raise failure(answer.status_code, await answer.read(), "QIDO-RS /studies")
    return bool(_dataset_list(await answer.read_all(MAX_JSON_BYTES, "QIDO-RS /studies")))
