"""AuditEvent for every access to FHIR data, shaped after IHE Basic Audit Log Patterns (BALP).

Writes carry their AuditEvent in the same storage transaction (``audited``): no change without
its record, no record of a change that did not happen. Reads and searches are recorded by
``Auditor`` in small batches a moment later, off the request path; a crash can lose at most the
last fraction of a second of read records, never a write's. Within a batch, one caller's
identical accesses (same interaction, address and query) are one AuditEvent whose ``period``
spans them and whose entities list each resource once. AuditEvents are searchable by
administrators only (``auth.access``) and are not themselves audited when read.

Shape: ``type`` rest (DICOM/HL7 audit-event-type), ``subtype`` the RESTful interaction,
``action`` C/R/U/D/E, ``outcome`` 0 (success) / 4 (minor failure: denied or not found),
``agent``: the user (``fhirUser``, or the client) as requestor with the network address,
and the client application; ``source`` this server; ``entity``: each resource touched (role 4,
domain resource), the patients whose compartment they are in (role 1, patient), and for a
search the query (type 2, query, base64 of the query string).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Awaitable, Callable

import orjson

from fhir_server.auth.principal import Principal
from fhir_server.search.values import IndexValues
from fhir_server.storage.port import Stored, Write
from fhir_server.write import Planned, new_version, now_instant

log = logging.getLogger(__name__)

EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "Restful Operation"}
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {"create": "C", "read": "R", "vread": "R", "search-type": "E", "search-system": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "update": "U", "patch": "U", "delete": "D",
           "transaction": "E", "batch": "E", "operation": "E"}
ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
FLUSH_EVERY = 0.2
BATCH = 500


def patients_of(type: str, id: str, index: IndexValues | None) -> list[str]:
    """The patients whose compartment the resource is in (a Patient is in its own)."""
    found = {t for p, t in index.references if p == "_compartment" and t.startswith("Patient/")} if index else set()
    if type == "Patient":
        found.add(f"Patient/{id}")
    return sorted(found)


def event(subtype: str, who: Principal | None, address: str | None, touched: list[str], patients: list[str],
          query: str | None = None, outcome: str = "0", detail: str | None = None) -> dict:
    agents = [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if who and who.fhir_user else "dataprocessor"}]},
        "who": {"reference": who.fhir_user} if who and who.fhir_user else
        {"identifier": {"system": "urn:telemed:client", "value": who.client_id if who else "anonymous"}},
        "altId": who.subject if who else None,
        "requestor": True,
        "network": {"address": address, "type": "2"} if address else None,
    }, {
        "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150",
                             "display": "Application"}]},
        "who": {"identifier": {"system": "urn:telemed:client", "value": who.client_id if who else "anonymous"}},
        "requestor": False,
    }]
    entities = [{"what": {"reference": r}, "type": {"system": ENTITY_TYPE, "code": "2"},
                 "role": {"system": ROLE, "code": "4", "display": "Domain Resource"}} for r in touched]
    entities += [{"what": {"reference": p}, "type": {"system": ENTITY_TYPE, "code": "1"},
                  "role": {"system": ROLE, "code": "1", "display": "Patient"}} for p in patients]
    if query is not None:
        entities.append({"type": {"system": ENTITY_TYPE, "code": "2"},
                         "role": {"system": ROLE, "code": "24", "display": "Query"},
                         "query": base64.b64encode(query.encode()).decode()})
    out = {
        "resourceType": "AuditEvent",
        "type": EVENT_TYPE,
        "subtype": [{"system": INTERACTION, "code": subtype}],
        "action": ACTIONS.get(subtype, "E"),
        "recorded": now_instant(),
        "outcome": outcome,
        "agent": [{k: v for k, v in a.items() if v is not None} for a in agents],
        "source": {"observer": {"display": "telemed FHIR server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
    }
    if detail:
        out["outcomeDesc"] = detail
    if entities:
        out["entity"] = entities
    return out


def address(request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


def audited(request, subtype: str, plan: Callable[[], Awaitable[Planned]]) -> Callable[[], Awaitable[Planned]]:
    """``plan`` with the AuditEvent of its writes added to the same commit."""

    async def with_record() -> Planned:
        planned = await plan()
        if planned.writes:
            who = request.scope.get("telemed.principal")
            touched = [f"{w.type}/{w.id}" for w in planned.writes]
            patients = sorted({p for w in planned.writes for p in patients_of(w.type, w.id, w.index)})
            record = event(subtype, who, address(request), touched, patients)
            planned.writes.append(new_version(record, str(uuid.uuid4()), 1, "POST"))
        return planned

    return with_record


def authentication(subtype: str, user: str | None, client_id: str, address: str | None, outcome: str,
                   detail: str | None = None) -> dict:
    """A user authentication (DICOM 110114) event: ``login`` at the authorization server's form,
    ``token`` when the token endpoint issues a token; ``outcome`` 0 (success) or 4 (refused)."""
    agent = {"who": {"reference": user} if user and "/" in user else
             {"identifier": {"system": "urn:telemed:user", "value": user or "unknown"}},
             "requestor": True}
    if address:
        agent["network"] = {"address": address, "type": "2"}
    out = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114",
                 "display": "User Authentication"},
        "subtype": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122", "display": "Login"}]
        if subtype == "login" else [{"system": "urn:telemed:audit", "code": "token", "display": "Token issued"}],
        "action": "E",
        "recorded": now_instant(),
        "outcome": outcome,
        "agent": [agent, {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                "code": "110150", "display": "Application"}]},
                          "who": {"identifier": {"system": "urn:telemed:client", "value": client_id}},
                          "requestor": False}],
        "source": {"observer": {"display": "telemed authorization server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
    }
    if user and user.startswith("Patient/"):
        out["entity"] = [{"what": {"reference": user}, "type": {"system": ENTITY_TYPE, "code": "1"},
                          "role": {"system": ROLE, "code": "1", "display": "Patient"}}]
    if detail:
        out["outcomeDesc"] = detail
    return out


class Auditor:
    """Records reads and searches in batches, one commit per batch."""

    def __init__(self, store):
        self.store = store
        self._queue: list = []  # (subtype, principal, address, touched, query, time) or a ready AuditEvent
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._flushing: asyncio.Lock | None = None

    def record(self, request, subtype: str, touched: list[Stored], query: str | None = None) -> None:
        if all(s.type == "AuditEvent" for s in touched) and touched:
            return
        self._enqueue((subtype, request.scope.get("telemed.principal"), address(request), touched, query, time.time()))

    def record_event(self, resource: dict) -> None:
        """Queue a ready AuditEvent (authentication events)."""
        self._enqueue(resource)

    def _enqueue(self, item) -> None:
        self._queue.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._queue) >= BATCH:
            self._wake.set()

    async def _run(self) -> None:
        while self._queue:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_EVERY)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commit the next batch. One flush at a time: a caller returns only after the batch that
        was being written when it called (if any) and its own are committed."""
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
        if not batch:
            return
        writes: list[Write] = []
        # One caller's identical accesses within a flush (the same interaction, address and
        # query) become one AuditEvent whose ``period`` spans them, listing each resource once.
        groups: dict[tuple, list] = {}
        for item in batch:
            if isinstance(item, dict):
                writes.append(new_version(item, str(uuid.uuid4()), 1, "POST"))
                continue
            subtype, who, addr, touched, query, at = item
            key = (subtype, who.token_id if who else None, addr, query)
            group = groups.get(key)
            if group is None:
                groups[key] = [subtype, who, addr, dict.fromkeys((s.type, s.id) for s in touched), query, at, at,
                               {(s.type, s.id): s for s in touched}]
            else:
                group[3].update(dict.fromkeys((s.type, s.id) for s in touched))
                group[7].update({(s.type, s.id): s for s in touched})
                group[6] = at
        for subtype, who, addr, refs, query, first, last, stored in groups.values():
            patients: set[str] = set()
            if query is not None:  # a search names its patients in its query (BALP Query pattern)
                patients.update(_query_patients(query))
            else:
                for s in stored.values():
                    if not s.deleted and s.json:
                        patients.update(patients_of(s.type, s.id, _index(s)))
            record = event(subtype, who, addr, [f"{t}/{i}" for t, i in refs], sorted(patients), query)
            if last > first:
                record["period"] = {"start": _instant(first), "end": _instant(last)}
            writes.append(new_version(record, str(uuid.uuid4()), 1, "POST"))
        try:
            await self.store.commit(writes, [])
        except Exception:  # noqa: BLE001 - audit must not take reads down; the failure is logged
            log.exception("could not write %d AuditEvents", len(writes))

    async def close(self) -> None:
        while self._queue:
            await self.flush()
        if self._task is not None:
            self._task.cancel()


def _instant(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _index(s: Stored) -> IndexValues:
    from fhir_server.search.extract import extract

    return extract(orjson.loads(s.json))


def _query_patients(query: str) -> set[str]:
    """``Patient/x`` values a search's query names (``patient=``, ``subject=``, ``_id`` on Patient...)."""
    from urllib.parse import parse_qsl

    type, _, qs = query.partition("?")
    out = set()
    for name, value in parse_qsl(qs):
        for v in value.split(","):
            if v.startswith("Patient/"):
                out.add(v.split("/_history")[0])
            elif name.split(":")[0] in ("patient", "_compartment") and v and "/" not in v:
                out.add(f"Patient/{v}")
            elif type == "Patient" and name == "_id":
                out.add(f"Patient/{v}")
    return out
