"""Access control for one caller: scopes, then the patient compartment, then participation.

1. Scopes (``auth.scopes``): the interaction's letter (c r u d s) on the resource type, from a
   ``system/``, ``user/`` or ``patient/`` grant. v2 granular grants (``?category=...``) add
   their search parameters as a filter.
2. Patient compartment (R4 CompartmentDefinition Patient): a grant used through ``patient/``
   is limited to the launch patient's compartment; a user whose ``fhirUser`` is a Patient is
   limited to their own compartment whatever the scope context.
3. Participation (``auth.consultation``): resources of a consultation are visible only to its
   participants (``auth.participants``).
4. Ownership: a Subscription is visible only to whoever created it (``subscriptions.subscription``):
   its endpoint, headers and signing key are theirs.
``system/`` grants skip 2, 3 and 4: they belong to registered backend clients (gateways, registries).

A resource the caller may not see answers like a missing one (404) on read; searches, history,
includes and Bundles leave it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import orjson

from fhir_server.auth import consultation, participants
from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import Grant
from fhir_server.auth.tokens import insufficient_scope
from fhir_server.errors import forbidden
from fhir_server.search.extract import extract
from fhir_server.storage.port import Stored
from fhir_server.subscriptions.subscription import OWNER, owner_key, owner_of

COMPARTMENT: dict[str, list[str]] = json.loads(
    (Path(__file__).with_name("_generated_patient_compartment.json")).read_text())["params"]
# The search parameter, indexed on every resource of a compartment type, holding the patients
# whose compartment the resource is in (the union of the CompartmentDefinition's parameters).
COMPARTMENT_PARAM = "_compartment"
LETTER_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True, slots=True)
class Rule:
    """How one interaction on one type is allowed for the caller."""

    type: str
    system: bool  # a system/ grant: no compartment, no participation
    patient: str | None  # limited to this patient's compartment
    constraints: tuple[tuple[tuple[str, str], ...], ...]  # any-of granular filters; () = none
    participation: bool
    owner: str | None = None  # Subscriptions: only this owner's

    @property
    def limited(self) -> bool:
        """Whether each resource must be checked (compartment, participation, granular filter, owner)."""
        return self.patient is not None or self.participation or bool(self.constraints) or self.owner is not None


class Access:
    """Decisions for one request's caller. Cheap to make; caches what it looks up."""

    def __init__(self, svc, who: Principal):
        self.svc = svc
        self.who = who
        self._mine: frozenset[str] | None = None
        self._parties: set[str] | None = None

    def on(self, svc) -> "Access":
        """The same caller's access over another view of the store (a transaction's pending writes)."""
        other = Access(svc, self.who)
        other._mine, other._parties = self._mine, self._parties
        return other

    # 1. scopes
    def rule(self, type: str, letter: str) -> Rule:
        if type == "AuditEvent" and letter != "c" and not self.who.admin:
            raise insufficient_scope("AuditEvents are visible to administrators only", "system/*.*")
        grants = self.who.scopes.matching(type, letter)
        if not grants:
            needed = f"user/{type}.{letter} or patient/{type}.{letter}"
            raise insufficient_scope(f"The access token does not grant {LETTER_NAMES[letter]} on {type}", needed)
        system = [g for g in grants if g.context == "system"]
        if system:
            return Rule(type, True, None, _constraints(system), False)
        user = [g for g in grants if g.context == "user"]
        own = self._own_patient()
        owner = owner_key(self.who) if type == "Subscription" else None
        if user:
            return Rule(type, False, own if owner is None else None, _constraints(user), type in consultation.SCOPED,
                        owner)
        patient = self.who.patient or own
        if owner is not None:
            return Rule(type, False, None, _constraints(grants), False, owner)
        if not patient:
            raise forbidden("patient/ scopes need a patient in the launch context; the token has none", type)
        return Rule(type, False, patient, _constraints(grants), type in consultation.SCOPED)

    def _own_patient(self) -> str | None:
        if self.who.user_type == "Patient":
            return self.who.fhir_user.split("/", 1)[1]
        return None

    # 2 + 3: one resource
    async def permits(self, rule: Rule, stored: Stored | None = None, resource: dict | None = None,
                      index=None) -> bool:
        """Whether the resource (stored, or about to be written) is within ``rule``."""
        if not rule.limited:
            return True
        if resource is None:
            resource = orjson.loads(stored.json)
        type = resource.get("resourceType", rule.type)
        if rule.owner is not None and stored is not None and owner_of(resource) != rule.owner:
            return False
        if rule.patient is not None and not in_compartment(resource, rule.patient, index):
            return False
        if rule.participation and type in consultation.SCOPED:
            code = consultation.tag_of(resource)
            if code != consultation.OPEN and (code is None or code not in await self.consultations()):
                if stored is not None or not await self._joins(resource):
                    return False
        if rule.constraints and stored is not None:
            return await self._matches_constraint(rule, stored)
        if rule.constraints and resource is not None:
            return await self._matches_constraint_resource(rule, resource, index)
        return True

    async def visible(self, stored: Stored, letter: str = "r") -> bool:
        """Whether the caller may read ``stored`` (no scope for its type: not visible)."""
        try:
            rule = self.rule(stored.type, letter)
        except Exception:  # noqa: BLE001 - an OperationOutcomeError: no grant for the type
            return False
        return await self.permits(rule, stored)

    async def visible_only(self, entries: list[Stored], letter: str = "r") -> list[Stored]:
        return [s for s in entries if s.deleted or await self.visible(s, letter)]

    # search
    async def restrict(self, rule: Rule, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The search parameters that keep a search of ``rule.type`` within the rule."""
        extra: list[tuple[str, str]] = []
        if rule.patient is not None:
            if rule.type == "Patient":
                extra.append(("_id", rule.patient))
            elif rule.type in COMPARTMENT:
                extra.append((COMPARTMENT_PARAM, f"Patient/{rule.patient}"))
            else:
                raise forbidden(f"{rule.type} resources are not in a patient's compartment; a patient-limited "
                                "token cannot search them", rule.type)
        if rule.participation and rule.type in consultation.SCOPED:
            codes = [consultation.OPEN, *sorted(await self.consultations())]
            extra.append(("_tag", ",".join(f"{consultation.ACCESS}|{c}" for c in codes)))
        if rule.constraints:
            extra += _constraint_params(rule)
        if rule.owner is not None:
            extra.append(("_security", f"{OWNER}|{rule.owner}"))
        return items + extra

    async def _joins(self, resource: dict) -> bool:
        """Whether a resource being written makes the caller a participant (a new consultation's
        requester, a Task the caller requests or owns)."""
        if self._parties is None:
            self._parties = await participants.parties(self.svc, self.who)
        named = [resource.get(k) for k in ("requester", "owner")] + list(resource.get("performer") or [])
        return any(isinstance(r, dict) and r.get("reference") in self._parties for r in named)

    async def limit(self, type: str) -> tuple:
        """The clauses that keep a search of ``type`` (a chain's or ``_has``'s) within the caller's access."""
        from fhir_server.search.plan import parse_query

        return parse_query(type, await self.restrict(self.rule(type, "s"), []), strict=True).clauses

    async def consultations(self) -> frozenset[str]:
        if self._mine is None:
            self._mine = await participants.consultations_of(self.svc, self.who)
        return self._mine

    async def _matches_constraint(self, rule: Rule, stored: Stored) -> bool:
        from fhir_server.search.plan import parse_query

        for constraint in rule.constraints:
            query = parse_query(rule.type, [("_id", stored.id), *constraint], strict=True)
            page = await self.svc.store.search(query, count=1, cursor=None, total=False)
            if page.entries:
                return True
        return False

    async def _matches_constraint_resource(self, rule: Rule, resource: dict, index) -> bool:
        """A resource being written matches a granular filter: checked on its own index values."""
        index = index or extract(resource)
        return any(all(token_matches(name, value, index) for name, value in constraint)
                   for constraint in rule.constraints)


def _constraints(grants: list[Grant]) -> tuple[tuple[tuple[str, str], ...], ...]:
    if any(not g.constraint for g in grants):
        return ()
    return tuple(dict.fromkeys(g.constraint for g in grants))


def _constraint_params(rule: Rule) -> list[tuple[str, str]]:
    """Granular filters as search parameters: one filter as it is; several that differ only in
    one parameter's value are ORed with a comma; other mixes cannot be expressed as one search."""
    if len(rule.constraints) == 1:
        return list(rule.constraints[0])
    names = {tuple(k for k, _ in c) for c in rule.constraints}
    if len(names) == 1 and len(next(iter(names))) == 1:
        name = next(iter(names))[0]
        return [(name, ",".join(c[0][1] for c in rule.constraints))]
    raise forbidden(f"The token's granular scopes on {rule.type} cannot be combined in one search; "
                    "search with one scope's parameters", rule.type)


def in_compartment(resource: dict, patient: str, index=None) -> bool:
    """Whether ``resource`` is in ``Patient/{patient}``'s compartment (R4 CompartmentDefinition)."""
    type = resource.get("resourceType")
    if type == "Patient" and resource.get("id") == patient:
        return True
    params = COMPARTMENT.get(type)
    if not params:
        return False
    target = f"Patient/{patient}"
    index = index or extract(resource)
    return any(p in params and t == target for p, t in index.references)


def token_matches(name: str, value: str, index) -> bool:
    """A written resource against one granular-scope parameter. Writes under granular scopes
    support token parameters (``code``, ``system|code``, ``|code``, ``system|``), ORed by commas."""
    if ":" in name:
        raise forbidden(f"Granular scope parameter '{name}' with a modifier cannot check a write", name)
    tokens = [(system, code) for param, system, code, _ in index.tokens if param == name]
    for one in value.split(","):
        if "|" in one:
            system, code = one.split("|", 1)
            if any((system == "" and s is None or system and s == system) and (not code or c == code)
                   for s, c in tokens):
                return True
        elif any(c == one for _, c in tokens):
            return True
    return False


async def for_request(request, svc) -> Access:
    """The access decisions of ``request``'s caller (401 without a valid token)."""
    known = request.scope.get("telemed.access")
    if known is None:
        known = request.scope["telemed.access"] = Access(svc, await svc.principal(request))
    return known


def outside(type: str) -> Exception:
    return forbidden(f"The {type} would be outside what the access token allows (its patient compartment, "
                     "granular scope or the consultations its user takes part in)", type)
