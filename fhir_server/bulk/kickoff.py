"""Kick-off: ``GET|POST [base]/$export``, ``[base]/Patient/$export``, ``[base]/Patient/{id}/$export``
(one patient: the Patient export with ``patient=Patient/{id}``), ``[base]/Group/{id}/$export``.

Needs ``Prefer: respond-async`` (400 without). Answers 202 with ``Content-Location``: the status
URL to poll. The job (types, the filters of each, ``transactionTime``) is stored before the
answer; the export itself runs in the background (``jobs.Workers``). The record lists entries:
one per type (kind "resources"), one for ``includeAssociatedData`` (kind "associated", the
Provenance resources of what is exported) and, for a ``_since`` export, one for the manifest's
``deleted`` files (kind "deleted", every type; its queries are those of the types' entries).

Access: a system-level export needs ``system/`` read (search) grants on the types; Patient and
Group exports need read on each type and keep within it as a search would (``Access.restrict``).
Tokens of a patient (``patient/`` scopes, or a Patient user) cannot export in bulk.
"""

from __future__ import annotations


from starlette.requests import Request
from starlette.responses import Response

from fhir_server import audit
from fhir_server.auth.access import COMPARTMENT, for_request
from fhir_server.bulk import groups, params
from fhir_server.errors import forbidden, invalid, issue, not_found, outcome
from fhir_server.http import base_url, json_response, read_body
from fhir_server.search import params as search_params
from fhir_server.services import Services
from fhir_server.write import now_instant

# Not exported unless named in _type: the audit trail.
NOT_BY_DEFAULT = ("AuditEvent",)


def compartment_types() -> list[str]:
    return sorted({"Patient", *COMPARTMENT})


async def handle(request: Request, svc: Services) -> Response:
    prefer = request.headers.get("prefer", "")
    if "respond-async" not in prefer:
        raise invalid("$export runs asynchronously: send Prefer: respond-async", "Prefer")
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        items += params.from_body(await read_body(request, svc.settings.max_body_bytes))
    req = params.parse(items, strict="handling=strict" in prefer)
    access = await for_request(request, svc)
    who = access.who
    if who.patient or who.user_type == "Patient" or "patient" in who.scopes.contexts():
        raise forbidden("Bulk export is for backend services and practitioners; a patient's token cannot export",
                        "$export")
    path_id = request.path_params.get("id")  # [base]/Group/{id}/$export or [base]/Patient/{id}/$export
    on_group = path_id is not None and request.url.path.rsplit("/", 3)[-3] == "Group"
    group_id, patient_id = (path_id, None) if on_group else (None, path_id)
    level = ("group" if group_id else "patient" if patient_id or request.url.path.endswith("/Patient/$export")
             else "system")
    patients: list[str] | None = None
    if group_id:
        group = await groups.load(svc.store, access, group_id)
        patients = await groups.members(svc.store, group, svc.settings.max_chain_ids)
        if req.patients:
            outside = [p for p in req.patients if p not in patients]
            if outside:
                raise invalid(f"Not members of Group/{group_id}: {', '.join('Patient/' + p for p in outside)}", "patient")
            patients = req.patients
    elif patient_id:
        stored = await svc.store.read("Patient", patient_id)
        if stored is None or stored.deleted or not await access.visible(stored):
            raise not_found(f"Patient/{patient_id} is not known", "Patient")
        if any(p != patient_id for p in req.patients):
            raise invalid(f"patient must be Patient/{patient_id} in an export of that patient", "patient")
        patients = [patient_id]
    elif req.patients:
        if level == "system":
            raise invalid("patient applies to Patient and Group exports", "patient")
        patients = req.patients
    types = await _types(access, level, req)
    entries = []
    for type in types:
        rule = access.rule(type, "s")
        limits = await access.restrict(rule, [])
        if patients is not None:
            limits.append(("_id", ",".join(patients)) if type == "Patient"
                          else ("_compartment", ",".join(f"Patient/{p}" for p in patients)))
        filters = req.type_filters.get(type)
        queries = [f + limits for f in filters] if filters else [limits] if limits else None
        entries.append({"type": type, "kind": "resources", "queries": queries, "parts": [], "done": patients == []})
    if req.associated:
        rule = access.rule("Provenance", "s")  # 403 without a grant
        if level == "system" and not rule.system:
            raise forbidden("includeAssociatedData in a system-level export needs system/Provenance.rs", "$export")
        limits = await access.restrict(rule, [])
        entries.append({"type": "Provenance", "kind": "associated", "file": "AssociatedProvenance",
                        "queries": [limits] if limits else None, "parts": [], "done": patients == []})
    if req.since:  # the manifest's ``deleted``: what was deleted since _since
        entries.append({"type": "Bundle", "kind": "deleted", "file": "Deleted", "parts": [],
                        "types": [e["type"] for e in entries if e["kind"] == "resources"], "done": patients == []})
    base = base_url(request, svc.settings.base_url)
    record = {
        "state": "accepted", "transactionTime": now_instant(), "request": str(request.url),
        "client_id": who.client_id, "subject": who.subject, "claims": who.claims, "base": base,
        "level": level, "since": req.since, "until": req.until, "elements": req.elements,
        "patients": patients, "warnings": req.warnings, "types": entries, "progress": 0,
        "associated": req.associated,
    }
    job_id = svc.bulk.jobs.create(record)
    svc.bulk.wake()
    touched = [f"Group/{group_id}"] if group_id else [f"Patient/{patient_id}"] if patient_id else []
    svc.auditor.record_event(audit.event("operation", who, audit.address(request), touched,
                                         [f"Patient/{p}" for p in (patients or [])[:100]],
                                         query=f"{request.url.path}?{_query(items)}",
                                         detail=f"bulk export job {job_id} kicked off"))
    body = outcome([issue("informational", f"Export job {job_id} accepted", severity="information")])
    return json_response(body, 202, {"Content-Location": f"{base}/bulk-status/{job_id}"})


async def _types(access, level: str, req: params.ExportRequest) -> list[str]:
    """The types to export: those asked for (each must be granted), else every type granted."""
    allowed = compartment_types() if level != "system" else sorted(search_params.resource_types())
    if req.types is not None:
        outside = [t for t in req.types if t not in allowed]
        if outside:
            raise invalid(f"Not in the patient compartment: {', '.join(outside)}", "_type")
        types = list(dict.fromkeys(req.types))
    else:
        types = [t for t in allowed if t not in NOT_BY_DEFAULT and access.who.scopes.allows(t, "s")]
        if not types:
            raise forbidden("The access token grants search on no resource type", "$export")
    for type in types:
        rule = access.rule(type, "s")  # 403 without a grant
        if level == "system" and not rule.system:
            raise forbidden(f"A system-level export needs system/{type}.rs (or system/*.read)", "$export")
    return types


def _query(items: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return urlencode(items)
