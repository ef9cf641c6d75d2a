"""The consultations a caller takes part in (participation, the third layer of access control).

A caller's parties are their ``fhirUser`` (a Practitioner, PractitionerRole or Patient), the
PractitionerRoles of that practitioner and their Organizations (so a consultation offered to an
organisation, e.g. a Task owned by it, is visible to its practitioners, who may claim it) and,
for every role coded ``coordinator``, the role's Organization's PractitionerRoles and their
practitioners. A consultation includes a
party when the party is its ServiceRequest's requester or performer, the requester or owner of a
Task of it, a candidate organisation of a Task of it still ``requested`` (platform matching
offered it to them to claim, ``Task?candidate=``; they lose it once another one claims it), or
an agent of a Provenance about its Task or request (so past owners keep access after a
transfer). Looked up per request through the search indexes, bounded by
``max_chain_ids``.
"""

from __future__ import annotations

import orjson

from fhir_server.auth import consultation
from fhir_server.auth.principal import Principal
from fhir_server.search.plan import parse_query
from profiles import CANONICAL

ROLE_SYSTEM = f"{CANONICAL}/CodeSystem/practitioner-role"
COORDINATOR = "coordinator"


async def _ids(svc, type: str, items: list[tuple[str, str]]) -> list:
    query = parse_query(type, items, strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    return page.entries


def _values(refs: set[str]) -> str:
    return ",".join(sorted(refs))


async def parties(svc, who: Principal) -> set[str]:
    refs: set[str] = set()
    if who.fhir_user:
        refs.add(who.fhir_user)
    if who.user_type == "Patient" or (who.patient and not who.fhir_user):
        if who.patient:
            refs.add(f"Patient/{who.patient}")
        return refs
    practitioners = {who.fhir_user} if who.user_type == "Practitioner" else set()
    roles = []
    if who.user_type == "PractitionerRole":
        rid = who.fhir_user.split("/", 1)[1]
        role = await svc.store.read("PractitionerRole", rid)
        roles = [role] if role is not None and not role.deleted else []
        for s in roles:
            ref = (orjson.loads(s.json).get("practitioner") or {}).get("reference")
            if ref:
                practitioners.add(ref)
                refs.add(ref)
    if practitioners:
        roles += await _ids(svc, "PractitionerRole", [("practitioner", _values(practitioners))])
    orgs: set[str] = set()
    for s in roles:
        refs.add(f"PractitionerRole/{s.id}")
        role = orjson.loads(s.json)
        codes = {(c.get("system"), c.get("code")) for cc in role.get("code") or () for c in cc.get("coding") or ()}
        org = (role.get("organization") or {}).get("reference")
        if org and role.get("active", True):
            refs.add(org)  # a request or Task addressed to the organisation itself (to be claimed)
            if (ROLE_SYSTEM, COORDINATOR) in codes:
                orgs.add(org)
    if orgs:
        refs |= orgs
        for s in await _ids(svc, "PractitionerRole", [("organization", _values(orgs))]):
            refs.add(f"PractitionerRole/{s.id}")
            ref = (orjson.loads(s.json).get("practitioner") or {}).get("reference")
            if ref:
                refs.add(ref)
    return refs


async def consultations_of(svc, who: Principal) -> frozenset[str]:
    refs = await parties(svc, who)
    if not refs:
        return frozenset()
    values = _values(refs)
    found: set[str] = set()
    tagged: list = []
    tagged += await _ids(svc, "ServiceRequest", [("requester", values)])
    tagged += await _ids(svc, "ServiceRequest", [("performer", values)])
    tagged += await _ids(svc, "Task", [("owner", values)])
    tagged += await _ids(svc, "Task", [("requester", values)])
    tagged += await _ids(svc, "Task", [("candidate", values), ("status", "requested")])  # offered, not yet claimed
    tagged += await _ids(svc, "Provenance", [("agent", values)])
    for s in tagged:
        code = consultation.tag_of(orjson.loads(s.json))
        if code and code != consultation.OPEN:
            found.add(code)
    return frozenset(found)
