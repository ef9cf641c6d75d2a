"""Who calls a consultation operation: a practitioner (``fhirUser``) and their PractitionerRoles.

Operations act in the name of a person, so the token must name a Practitioner or a
PractitionerRole as ``fhirUser``; system clients and patients are refused (403). A
PractitionerRole user acts through that one role; a Practitioner through each of their active
roles. ``refs`` are the references that designate the caller (as requester, owner or agent).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from fhir_server.auth.access import Access
from fhir_server.errors import forbidden
from fhir_server.search.plan import parse_query
from operations.consult.codes import COORDINATOR, ROLE_SYSTEM


@dataclass(frozen=True, slots=True)
class Caller:
    user: str  # the fhirUser: Practitioner/x or PractitionerRole/y
    practitioner: str | None
    roles: dict[str, dict]  # "PractitionerRole/id" -> the role resource (active roles only)

    @property
    def refs(self) -> frozenset[str]:
        return frozenset({self.user, *([self.practitioner] if self.practitioner else []), *self.roles})

    def roles_in(self, org: str | None) -> list[str]:
        return [ref for ref, role in self.roles.items() if org and organization(role) == org]

    def coordinates(self, org: str | None) -> bool:
        return any((ROLE_SYSTEM, COORDINATOR) in _codes(self.roles[ref]) for ref in self.roles_in(org))

    def is_(self, reference: dict | None) -> bool:
        return isinstance(reference, dict) and reference.get("reference") in self.refs


def organization(role: dict) -> str | None:
    return (role.get("organization") or {}).get("reference")


def _codes(role: dict) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for cc in role.get("code") or () for c in cc.get("coding") or ()}


async def of(svc, access: Access) -> Caller:
    who = access.who
    if who.user_type not in ("Practitioner", "PractitionerRole"):
        raise forbidden("Consultation operations act in a practitioner's name: the access token's fhirUser must be "
                        "a Practitioner or PractitionerRole", "fhirUser")
    if who.user_type == "PractitionerRole":
        stored = await svc.store.read("PractitionerRole", who.fhir_user.split("/", 1)[1])
        role = orjson.loads(stored.json) if stored is not None and not stored.deleted else None
        if role is None or role.get("active") is False:
            raise forbidden(f"{who.fhir_user} is not an active PractitionerRole", "fhirUser")
        practitioner = (role.get("practitioner") or {}).get("reference")
        return Caller(who.fhir_user, practitioner, {who.fhir_user: role})
    query = parse_query("PractitionerRole", [("practitioner", who.fhir_user)], strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    roles = {f"PractitionerRole/{s.id}": orjson.loads(s.json) for s in page.entries}
    return Caller(who.fhir_user, who.fhir_user, {ref: r for ref, r in roles.items() if r.get("active") is not False})
