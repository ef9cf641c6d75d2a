"""After a STOW-RS to a consultation: the ImagingStudy of each stored study, and its link from
the consultation's ``ServiceRequest.supportingInfo``, written in one storage transaction.

Before anything is stored, ``check_patient`` makes sure the instances are of the request's
patient. The rule: every instance's Patient ID (0010,0020) must equal the ``value`` of one of
the ``identifier``s of the Patient the ServiceRequest's ``subject`` names (any system: a
medical record number, SNILS, a policy number...), compared without its DICOM padding, without
spaces and hyphens, and ignoring case (so ``123-456-789 01`` matches ``12345678901``). Issuer
of Patient ID (0010,0021) and Other Patient IDs are not considered (issuers are free text that
names no identifier system). An instance without a Patient ID, or a Patient without any
identifier, cannot be checked and is refused as well. Refusals are 422 (``business-rule``) with
one issue per offending instance naming ``PatientID`` (0010,0020), and nothing is stored: one
wrong instance refuses the whole upload, since a partly stored upload to the wrong patient's
consultation is worse than none.

The ImagingStudy is found by its Study Instance UID identifier (``urn:dicom:uid``) and updated
(new series and instances added), or created for the request's patient with ``basedOn`` the
request. Both writes, and their AuditEvent, commit together or not at all (``commit_planned``,
retried on a concurrent change, with guards so two uploads of one study make one ImagingStudy).
"""

from __future__ import annotations

from collections import defaultdict

import orjson

from dicomweb.access import UID_SYSTEM, identifier_token
from dicomweb.stow_parts import Head
from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.auth.access import Access, outside
from fhir_server.errors import OperationOutcomeError, conflict, issue, not_found, unprocessable
from fhir_server.search.plan import parse_query
from fhir_server.storage.port import Guard
from fhir_server.write import Planned, accept, commit_planned, new_id, new_version

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


async def attach(request, svc, access: Access, request_id: str, heads: list[Head]) -> list[str]:
    """Write the ImagingStudies of ``heads`` and link them to ``ServiceRequest/{request_id}``;
    the ImagingStudy references."""
    by_study: dict[str, list[Head]] = defaultdict(list)
    for h in heads:
        by_study[h.study].append(h)
    refs: list[str] = []

    async def plan() -> Planned:
        refs.clear()
        sr = await check_request(access, request_id)
        request_resource = orjson.loads(sr.json)
        subject = (request_resource.get("subject") or {}).get("reference")
        writes, guards = [], []
        for uid, study_heads in sorted(by_study.items()):
            query = parse_query("ImagingStudy", [("identifier", identifier_token(uid))], strict=True)
            page = await svc.store.search(query, count=2, cursor=None, total=False)
            current = page.entries[0] if page.entries else None
            if current is None:
                rule, id, version = access.rule("ImagingStudy", "c"), new_id(), 1
                resource = {"resourceType": "ImagingStudy", "identifier": [
                    {"system": UID_SYSTEM, "value": f"urn:oid:{uid}"}], "status": "available",
                    "subject": {"reference": subject}, "basedOn": [], "series": []}
            else:
                rule, id, version = access.rule("ImagingStudy", "u"), current.id, current.version + 1
                resource = orjson.loads(current.json)
                have = (resource.get("subject") or {}).get("reference")
                if have != subject:
                    raise conflict(f"Study {uid} belongs to {have}; ServiceRequest/{request_id} is about {subject}",
                                   "StudyInstanceUID")
            _merge(resource, study_heads, f"ServiceRequest/{request_id}")
            accept(resource, "ImagingStudy", svc.settings.max_depth)
            write = new_version(resource, id, version, "POST" if current is None else "PUT")
            if current is not None and not await access.permits(rule, current):
                raise outside("ImagingStudy")
            if not await access.permits(rule, resource=resource, index=write.index):
                raise outside("ImagingStudy")
            writes.append(write)
            guards.append(Guard(query, frozenset() if current is None else frozenset({id})))
            refs.append(f"ImagingStudy/{id}")
        info = list(request_resource.get("supportingInfo") or [])
        have = {i.get("reference") for i in info if isinstance(i, dict)}
        added = [{"reference": r} for r in refs if r not in have]
        if added:
            request_resource["supportingInfo"] = info + added
            await consultation.stamp(svc.store, request_resource, sr.id)
            writes.append(new_version(request_resource, sr.id, sr.version + 1, "PUT"))
        return Planned(200, writes=writes, guards=guards)

    await commit_planned(svc.store, audited(request, "update", plan))
    return refs


async def check_request(access: Access, request_id: str):
    """The consultation's ServiceRequest, when the caller may see and update it (404 / 403)."""
    svc = access.svc
    sr = await svc.store.read("ServiceRequest", request_id)
    if sr is None or sr.deleted or not await access.visible(sr):
        raise not_found(f"ServiceRequest/{request_id} is not known", "request")
    if not await access.permits(access.rule("ServiceRequest", "u"), sr):
        raise outside("ServiceRequest")
    access.rule("ImagingStudy", "c")  # 403 without the scope to create the ImagingStudy
    subject = (orjson.loads(sr.json).get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not subject.startswith("Patient/"):
        raise unprocessable(f"ServiceRequest/{request_id} has no Patient subject to file the study under", "request")
    return sr


def _normal_id(value: str) -> str:
    return "".join(value.split()).replace("-", "").upper()


async def check_patient(svc, sr, heads: list[Head]) -> None:
    """422 unless every instance's PatientID is an identifier of the request's patient (module
    docstring)."""
    subject = (orjson.loads(sr.json).get("subject") or {}).get("reference")
    patient = await svc.store.read("Patient", subject.split("/", 1)[1])
    values = set()
    if patient is not None and not patient.deleted:
        for ident in orjson.loads(patient.json).get("identifier") or ():
            value = ident.get("value") if isinstance(ident, dict) else None
            if isinstance(value, str) and value.strip():
                values.add(_normal_id(value))
    if not values:
        raise OperationOutcomeError([issue(
            "business-rule", f"{subject}, the patient of ServiceRequest/{sr.id}, has no identifier to check the "
            "instances' PatientID (0010,0020) against", ["request", "PatientID"])], status=422)
    issues = []
    for n, h in enumerate(heads, 1):
        if not h.patient_id:
            issues.append(issue("business-rule", f"Part {n} (SOP Instance {h.instance}) has no PatientID (0010,0020): "
                                f"it cannot be checked against {subject}", "PatientID"))
        elif _normal_id(h.patient_id) not in values:
            issues.append(issue("business-rule", f"Part {n} (SOP Instance {h.instance}) has PatientID (0010,0020) "
                                f"'{h.patient_id}', which is not an identifier of {subject}, the patient of "
                                f"ServiceRequest/{sr.id}; nothing was stored", "PatientID"))
    if issues:
        raise OperationOutcomeError(issues, status=422)


def _merge(resource: dict, heads: list[Head], request_ref: str) -> None:
    """Add ``heads``' series and instances (and the request in ``basedOn``) to an ImagingStudy."""
    based = resource.setdefault("basedOn", [])
    if not any(b.get("reference") == request_ref for b in based if isinstance(b, dict)):
        based.append({"reference": request_ref})
    first = heads[0]
    if first.study_description and "description" not in resource:
        resource["description"] = first.study_description
    if first.study_date and len(first.study_date) == 8 and first.study_date.isdigit() and "started" not in resource:
        d = first.study_date
        resource["started"] = f"{d[:4]}-{d[4:6]}-{d[6:]}"
    series = {s["uid"]: s for s in resource.setdefault("series", [])}
    for h in heads:
        one = series.get(h.series)
        if one is None:
            one = series[h.series] = {"uid": h.series, "modality": {"system": DCM, "code": h.modality or "OT"},
                                      "instance": []}
            if h.series_number is not None:
                one["number"] = h.series_number
            if h.series_description:
                one["description"] = h.series_description
            resource["series"].append(one)
        instances = one.setdefault("instance", [])
        if not any(i.get("uid") == h.instance for i in instances):
            instance = {"uid": h.instance, "sopClass": {"system": "urn:ietf:rfc:3986",
                                                        "code": f"urn:oid:{h.sop_class or SECONDARY_CAPTURE}"}}
            if h.instance_number is not None:
                instance["number"] = h.instance_number
            instances.append(instance)
    for s in resource["series"]:
        s["numberOfInstances"] = len(s.get("instance") or [])
    resource["numberOfSeries"] = len(resource["series"])
    resource["numberOfInstances"] = sum(s["numberOfInstances"] for s in resource["series"])
    if not resource["basedOn"]:
        del resource["basedOn"]
