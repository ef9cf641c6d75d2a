"""Platform matching (CN-1, CN-10, KZ-6): the organisations a consultation may be offered to.

- Agreements (CN-10): an ``OrganizationAffiliation`` whose ``organization`` is the requesting
  organisation (the primary one, to which services are provided) and whose
  ``participatingOrganization`` is the consulting one (it provides the consultations), as FHIR
  defines the two sides. It counts while ``active`` is not false and its ``period`` (if any)
  covers now; when it lists ``specialty``, it covers requests for those specialties only. An
  agreement goes one way: A asks B under {organization: A, participatingOrganization: B}.
- What is asked: the request's ``performerType`` codings (the specialty, compared with
  ``HealthcareService.specialty``) and ``code`` codings (the service, compared with
  ``HealthcareService.type``); each is compared only when the request states it, and a request
  that states neither cannot be matched (a coordinator routes it).
- Special routes (KZ-6): an active HealthcareService with the characteristic
  ``consultation-routing|special-route`` is the special route of its specialties: when the
  request asks for one of them, only organisations with such a service are candidates (a rule,
  not a preference: without an agreement with one of them the request awaits routing).
- Availability and load: a candidate needs an active Organization and at least one available
  consultant, an active PractitionerRole of it (``period`` covering now, not ``notAvailable``
  now; not a coordinator-only role; of the asked specialty when the request states one).
  ``availableTime`` is not used: it is local time and organisations have no time zone yet.
  Candidates are ranked by open Tasks (requested, in-progress, on-hold) owned by the
  organisation or its roles per available consultant, least loaded first; at most
  ``MAX_CANDIDATES``. The national registers (RU-10) and years of practice (CN-2) are not checked.

The candidates are recorded on the Task as ``Task.input`` of type ``consultation-routing|candidate``
(``valueReference`` the Organization, in rank order), found with the SearchParameter
``Task?candidate=`` (profiles/searchparameter-task-candidate.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from fhir_server.search.plan import parse_query
from operations.consult.codes import COORDINATOR, ROLE_SYSTEM, business_status
from operations.consult.deadline import parse_instant
from profiles import CANONICAL

ROUTING = f"{CANONICAL}/CodeSystem/consultation-routing"
CANDIDATE, SUCCESSOR, SPECIAL_ROUTE = "candidate", "successor", "special-route"
MAX_CANDIDATES = 10
OPEN = "requested,in-progress,on-hold"


@dataclass(frozen=True, slots=True)
class Candidate:
    organization: str
    consultants: int  # available consultant roles
    load: int  # open Tasks owned by the organisation or its roles

    @property
    def rank(self) -> tuple:
        return (self.load / self.consultants, -self.consultants, self.organization)


def codings(concepts) -> set[tuple[str | None, str | None]]:
    """(system, code) of a CodeableConcept or a list of them."""
    items = concepts if isinstance(concepts, list) else [concepts]
    return {(c.get("system"), c.get("code")) for cc in items if isinstance(cc, dict)
            for c in cc.get("coding") or () if isinstance(c, dict) and c.get("code")}


def covers(period: dict | None, now: datetime) -> bool:
    """Whether a Period (None: always) includes ``now``; a bare date counts as its whole day."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    if start and _instant(start, "00:00:00") > now:
        return False
    return not end or _instant(end, "23:59:59.999999") >= now


def _instant(text: str, clock: str) -> datetime:
    if "T" not in text:
        text = f"{text}{'-01' * (2 - text.count('-'))}T{clock}Z"
    return parse_instant(text)


def _live(resource: dict) -> bool:
    return resource.get("active") is not False


def _ref(value) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


async def _search(svc, type: str, items: list[tuple[str, str]]) -> list[dict]:
    query = parse_query(type, items, strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    return [orjson.loads(s.json) | {"id": s.id} for s in page.entries]


async def requester_organizations(svc, requester: str | None) -> set[str]:
    """The organisations a requester (PractitionerRole, Practitioner or Organization) acts for."""
    type, _, id = (requester or "").partition("/")
    if type == "Organization":
        return {requester}
    if type == "PractitionerRole":
        stored = await svc.store.read(type, id)
        role = orjson.loads(stored.json) if stored is not None and not stored.deleted else {}
        return {_ref(role.get("organization"))} - {None} if _live(role) else set()
    if type == "Practitioner":
        roles = await _search(svc, "PractitionerRole", [("practitioner", requester)])
        return {_ref(r.get("organization")) for r in roles if _live(r)} - {None}
    return set()


def asked(request: dict) -> tuple[set, set]:
    """(specialties, services) the request asks for: ``performerType`` and ``code`` codings."""
    return codings(request.get("performerType")), codings(request.get("code"))


async def agreements(svc, requesters: set[str], now: datetime, specialties: set | None = None) -> set[str]:
    """The organisations with an active agreement to consult for one of ``requesters`` (CN-10);
    with ``specialties``, only agreements that cover them (those listing no specialty cover all)."""
    if not requesters:
        return set()
    found = set()
    for a in await _search(svc, "OrganizationAffiliation", [("primary-organization", ",".join(sorted(requesters)))]):
        listed = codings(a.get("specialty"))
        if _live(a) and covers(a.get("period"), now) and (not listed or specialties is None or listed & specialties):
            found.add(_ref(a.get("participatingOrganization")))
    return found - {None}


def _tokens(pairs: set) -> str:
    return ",".join(f"{s or ''}|{c}" for s, c in sorted(pairs, key=str))


async def offering(svc, specialties: set, services: set) -> dict[str, bool]:
    """Organisation -> whether it is a special route, for the active services that offer what is
    asked; only special routes when one exists for the asked specialty (KZ-6)."""
    items = ([("specialty", _tokens(specialties))] if specialties else []) + (
        [("service-type", _tokens(services))] if services else [])
    found: dict[str, bool] = {}
    for hs in await _search(svc, "HealthcareService", items):
        org = _ref(hs.get("providedBy"))
        if not (_live(hs) and org and (not specialties or codings(hs.get("specialty")) & specialties)
                and (not services or codings(hs.get("type")) & services)):
            continue
        special = bool(specialties) and (ROUTING, SPECIAL_ROUTE) in codings(hs.get("characteristic"))
        found[org] = found.get(org, False) or special
    if any(found.values()):
        return {org: True for org, special in found.items() if special}
    return found


def available(role: dict, now: datetime, specialties: set) -> bool:
    """Whether a PractitionerRole is a consultant who can take a request now."""
    codes = codings(role.get("code"))
    if not _live(role) or not covers(role.get("period"), now) or codes == {(ROLE_SYSTEM, COORDINATOR)}:
        return False
    if specialties and not codings(role.get("specialty")) & specialties:
        return False
    return not any(isinstance(n, dict) and isinstance(n.get("during"), dict) and covers(n["during"], now)
                   for n in role.get("notAvailable") or ())


async def rank(svc, organizations: set[str], now: datetime, specialties: set) -> list[Candidate]:
    """The organisations with available consultants, least loaded first (at most MAX_CANDIDATES)."""
    if not organizations:
        return []
    ids = [o.split("/", 1)[1] for o in sorted(organizations)]
    live = {f"Organization/{s.id}" for s in await svc.store.read_many("Organization", ids)
            if _live(orjson.loads(s.json))}
    if not live:
        return []
    roles: dict[str, list[str]] = {}
    for role in await _search(svc, "PractitionerRole", [("organization", ",".join(sorted(live)))]):
        if available(role, now, specialties):
            roles.setdefault(_ref(role.get("organization")), []).append(f"PractitionerRole/{role['id']}")
    out = []
    for org, refs in roles.items():
        owners = ",".join([org, *refs])
        query = parse_query("Task", [("owner", owners), ("status", OPEN)], strict=True)
        load = len(await svc.store.search_ids(query, svc.settings.max_chain_ids))
        out.append(Candidate(org, len(refs), load))
    return sorted(out, key=lambda c: c.rank)[:MAX_CANDIDATES]


async def match(svc, request: dict, requester: str | None, now: datetime, exclude: set[str] = frozenset()
                ) -> list[Candidate]:
    """The candidate organisations of a consultation request, best first (CN-1, CN-10, KZ-6)."""
    specialties, services = asked(request)
    if not specialties and not services:
        return []
    requesters = await requester_organizations(svc, requester)
    agreed = await agreements(svc, requesters, now, specialties)
    offered = await offering(svc, specialties, services)
    found = {o for o in set(offered) & agreed if o.startswith("Organization/") and o.count("/") == 1}
    return await rank(svc, found - set(exclude) - requesters, now, specialties)


def candidates_of(task: dict) -> list[str]:
    """The candidate organisations recorded on a Task, in rank order."""
    return [_ref(i.get("valueReference")) for i in task.get("input") or ()
            if (ROUTING, CANDIDATE) in codings(i.get("type")) and _ref(i.get("valueReference"))]


def _input(org: str) -> dict:
    return {"type": {"coding": [{"system": ROUTING, "code": CANDIDATE, "display": "Candidate organisation"}]},
            "valueReference": {"reference": org}}


def offer(task: dict, candidates: list[Candidate]) -> None:
    """Record ``candidates`` on the Task (in place), replacing earlier ones: no owner; business
    status ``offered``, or ``awaiting-routing`` when there is none."""
    inputs = [i for i in task.get("input") or () if (ROUTING, CANDIDATE) not in codings(i.get("type"))]
    inputs += [_input(c.organization) for c in candidates]
    task.pop("owner", None)
    task.pop("input", None)
    if inputs:
        task["input"] = inputs
    task["businessStatus"] = business_status("offered" if candidates else "awaiting-routing")


def assign(task: dict, organization: str) -> None:
    """Offer the Task to one organisation (direct invitation): owner, no candidates left."""
    inputs = [i for i in task.get("input") or () if (ROUTING, CANDIDATE) not in codings(i.get("type"))]
    task.pop("input", None)
    if inputs:
        task["input"] = inputs
    task.update(owner={"reference": organization}, businessStatus=business_status("awaiting-acceptance"))


async def agreed(svc, request: dict, organization: str, now: datetime) -> bool:
    """Whether the request's requester's organisation has an active agreement with ``organization``
    that covers the request's specialty (a direct invitation, CN-1 and CN-10)."""
    specialties, _ = asked(request)
    requesters = await requester_organizations(svc, _ref(request.get("requester")))
    return organization in await agreements(svc, requesters, now, specialties or None)
