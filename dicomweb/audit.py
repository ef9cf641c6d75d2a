"""An AuditEvent for every DICOMweb access, allowed or denied (``fhir_server.audit`` shape).

``subtype`` holds the RESTful interaction (``search-type`` for QIDO-RS, ``read`` for WADO-RS,
``create`` for STOW-RS) and the DICOMweb service (``urn:telemed:dicomweb``); each study is an
entity identified by its Study Instance UID (role 3, report), with its ImagingStudy and
patient when the server knows them; a QIDO-RS query is recorded as the query entity (base64).
Denied and failed accesses have ``outcome`` 4 and say why in ``outcomeDesc``.

As for FHIR reads (``fhir_server.audit``): one caller's identical accesses within
``FLUSH_EVERY`` seconds (same service, token, address, query, outcome and studies: a viewer
fetching the frames of one study, or repeating a search) are one AuditEvent whose ``period``
spans them. Writing an AuditEvent per frame cost more than the rest of the request.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from fhir_server import audit
from fhir_server.audit import ENTITY_TYPE, ROLE

SERVICE = "urn:telemed:dicomweb"
FLUSH_EVERY = 0.2


class Batch:
    """AuditEvents of the last ``FLUSH_EVERY`` seconds, identical accesses merged, handed to
    the server's ``Auditor`` at the end of that time (or at shutdown)."""

    def __init__(self):
        self._groups: dict[tuple, list] = {}
        self._auditor = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, auditor, key: tuple, build) -> None:
        now = time.time()
        group = self._groups.get(key)
        if group is not None:
            group[2] = now
            return
        self._groups[key] = [build(), now, now]
        self._auditor = auditor
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        groups, self._groups = self._groups, {}
        for event, first, last in groups.values():
            if last > first:
                event["period"] = {"start": _instant(first), "end": _instant(last)}
            self._auditor.record_event(event)


def _instant(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(request, svc, who, service: str, studies: dict, outcome: str = "0", detail: str | None = None,
           query: str | None = None) -> None:
    """Queue the AuditEvent of one DICOMweb request. ``studies``: UID -> ``access.Study`` or None."""
    address = audit.address(request)

    def build() -> dict:
        interaction = {"qido-rs": "search-type", "wado-rs": "read", "stow-rs": "create"}[service]
        touched = sorted({s.imaging_study for s in studies.values() if s is not None and s.imaging_study})
        patients = sorted({s.patient for s in studies.values() if s is not None and s.patient})
        event = audit.event(interaction, who, address, touched, patients, query, outcome, detail)
        event["subtype"].append({"system": SERVICE, "code": service})
        event.setdefault("entity", []).extend(
            {"what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}},
             "type": {"system": ENTITY_TYPE, "code": "2"},
             "role": {"system": ROLE, "code": "3", "display": "Report"},
             "description": "DICOM study"} for uid in sorted(studies))
        return event

    batch = svc.dicomweb.audit if svc.dicomweb is not None and service != "stow-rs" else None
    if batch is None:  # stores are recorded one by one
        svc.auditor.record_event(build())
        return
    key = (service, who.issuer, who.subject, who.client_id, who.token_id, who.fhir_user, address, query, outcome,
           detail, tuple(sorted((uid, s) for uid, s in studies.items())))
    batch.add(svc.auditor, key, build)
