"""STOW-RS: ``POST /dicomweb/studies[/{study}]``, optionally to a consultation
(``?request=ServiceRequest/{id}``).

Order: the body is spooled and split, each part's UIDs read (400 on a bad body, before the
PACS sees anything); the caller's right to every study in it is checked; the instances are
stored in the PACS; only then, for a consultation, the ImagingStudy and the link are written
(``link``) in one transaction. A PACS failure leaves no ImagingStudy behind; a failed FHIR
write leaves instances in the PACS that no link makes visible (storing again repairs it:
the PACS accepts the same instances again).

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
from fhir_server.auth.access import for_request
from fhir_server.errors import forbidden, invalid
from fhir_server.services import Services

DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"


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
    if request_id is not None:
        try:
            await link.check_request(access, request_id)
        except Exception as exc:
            audit.record(request, svc, access.who, "stow-rs", {}, "4", str(exc))
            raise
    body = await spool(request, svc.settings.dicomweb_max_stow_bytes)
    try:
        parts = await asyncio.to_thread(split, body, boundary)
        found = await asyncio.to_thread(heads, body, parts)
        await _authorize(request, svc, access, proxy, seen, found, request_id)
        path = "/studies" + (f"/{target}" if target else "")
        response = await proxy.upstream.open(
            "POST", path, (), {"Content-Type": content_type, "Accept": DICOM_JSON,
                               "Content-Length": str(size_of(body))}, upload(body))
        if response.status_code not in (200, 202, 409) and not (response.status_code == 400 and _is_json(response)):
            audit.record(request, svc, access.who, "stow-rs", {h.study: None for h in found}, "4",
                         f"The PACS answered {response.status_code}")
            raise await proxy.upstream.fail(response, f"STOW-RS {path}")
        status = response.status_code
        raw = await proxy.upstream.read(response)
    finally:
        body.close()
    result = orjson.loads(raw) if raw.strip() else {}
    stored = _stored(result, found)
    for uid in {h.study for h in stored}:
        proxy.cache.forget_study(uid)
    headers = {}
    if request_id is not None and stored:
        refs = await link.attach(request, svc, access, request_id, stored)
        fhir = own_base(request, svc.settings).removesuffix("/dicomweb") + "/fhir"
        headers["Link"] = ", ".join(f'<{fhir}/{r}>; rel="related"' for r in refs)
    Rewriter(proxy.upstream.root, own_base(request, svc.settings)).json(result)
    studies = {h.study: seen.studies.get(h.study) for h in found}
    audit.record(request, svc, access.who, "stow-rs", studies, "0" if status == 200 else "4",
                 None if status == 200 else f"The PACS stored {len(stored)} of {len(found)} instances")
    return Response(orjson.dumps(result), status, headers=headers, media_type=DICOM_JSON)


def _is_json(response) -> bool:
    return "json" in response.headers.get("content-type", "")


def _stored(result, found: list[Head]) -> list[Head]:
    """The parts the PACS lists as stored (ReferencedSOPSequence)."""
    uids = set()
    items = ((result.get(REFERENCED_SOP_SEQUENCE) or {}).get("Value") or []) if isinstance(result, dict) else []
    for item in items:
        value = (item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") if isinstance(item, dict) else None
        if value:
            uids.add(value[0])
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
    response = await proxy.upstream.open("GET", "/studies", [("StudyInstanceUID", uid)], {"Accept": DICOM_JSON})
    if response.status_code == 204:
        await response.aclose()
        return False
    if response.status_code != 200:
        raise await proxy.upstream.fail(response, "QIDO-RS /studies")
    return bool(orjson.loads(await proxy.upstream.read(response) or b"[]"))
