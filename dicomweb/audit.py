"""An AuditEvent for every DICOMweb access, allowed or denied (``fhir_server.audit`` shape).

``subtype`` holds the RESTful interaction (``search-type`` for QIDO-RS, ``read`` for WADO-RS,
``create`` for STOW-RS) and the DICOMweb service (``urn:telemed:dicomweb``); each study is an
entity identified by its Study Instance UID (role 3, report), with its ImagingStudy and
patient when the server knows them; a QIDO-RS query is recorded as the query entity (base64).
Denied and failed accesses have ``outcome`` 4 and say why in ``outcomeDesc``.
"""

from __future__ import annotations

from fhir_server import audit
from fhir_server.audit import ENTITY_TYPE, ROLE

SERVICE = "urn:telemed:dicomweb"


def record(request, svc, who, service: str, studies: dict, outcome: str = "0", detail: str | None = None,
           query: str | None = None) -> None:
    """Queue the AuditEvent of one DICOMweb request. ``studies``: UID -> ``access.Study`` or None."""
    interaction = {"qido-rs": "search-type", "wado-rs": "read", "stow-rs": "create"}[service]
    touched = sorted({s.imaging_study for s in studies.values() if s is not None and s.imaging_study})
    patients = sorted({s.patient for s in studies.values() if s is not None and s.patient})
    event = audit.event(interaction, who, audit.address(request), touched, patients, query, outcome, detail)
    event["subtype"].append({"system": SERVICE, "code": service})
    event.setdefault("entity", []).extend(
        {"what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}},
         "type": {"system": ENTITY_TYPE, "code": "2"},
         "role": {"system": ROLE, "code": "3", "display": "Report"},
         "description": "DICOM study"} for uid in sorted(studies))
    svc.auditor.record_event(event)
