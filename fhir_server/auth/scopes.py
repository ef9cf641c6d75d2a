"""SMART scopes (App Launch 1.0 and 2.x) parsed into grants.

A grant is ``context/Type.letters[?param=value&...]``: context ``patient``, ``user`` or ``system``;
letters from ``cruds`` (v2) or v1's ``read`` (= ``rs``), ``write`` (= ``cud``) and ``*``
(= ``cruds``). v2 granular scopes carry search-parameter constraints, e.g.
``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs``:
only resources matching that search are granted. Scopes that are not resource scopes
(``openid``, ``fhirUser``, ``launch``, ``offline_access``...) are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(?:\?(.*))?$")

# Interactions by the scope letter that grants them.
CREATE, READ, UPDATE, DELETE, SEARCH = "c", "r", "u", "d", "s"


@dataclass(frozen=True, slots=True)
class Grant:
    context: str
    type: str  # a resource type or "*"
    letters: frozenset[str]
    constraint: tuple[tuple[str, str], ...] = ()  # search parameters a granted resource must match

    def covers(self, type: str, letter: str) -> bool:
        return letter in self.letters and self.type in ("*", type)


@dataclass(frozen=True, slots=True)
class Scopes:
    grants: tuple[Grant, ...]
    other: frozenset[str]  # openid, fhirUser, launch, launch/patient, offline_access, ...
    text: str  # the granted scope string, normalised

    def matching(self, type: str, letter: str) -> list[Grant]:
        return [g for g in self.grants if g.covers(type, letter)]

    def allows(self, type: str, letter: str) -> bool:
        return any(g.covers(type, letter) for g in self.grants)

    def contexts(self) -> set[str]:
        return {g.context for g in self.grants}


def parse_grant(scope: str) -> Grant | None:
    """One resource scope as a grant; None when ``scope`` is no (valid) resource scope."""
    m = _RESOURCE_SCOPE.match(scope)
    if not m:
        return None
    context, type, letters, query = m.groups()
    if letters in V1:
        if query:
            return None  # constraints are a v2 feature
        letters = V1[letters]
    elif not _ordered_letters(letters):
        return None
    constraint = tuple(parse_qsl(query, keep_blank_values=False)) if query else ()
    if query and not constraint:
        return None
    return Grant(context, type, frozenset(letters), constraint)


def _ordered_letters(letters: str) -> bool:
    """v2 letters appear at most once each and in the order c, r, u, d, s."""
    positions = [LETTERS.find(ch) for ch in letters]
    return bool(letters) and -1 not in positions and positions == sorted(set(positions))


def parse(scope: str | None) -> Scopes:
    grants: list[Grant] = []
    other: set[str] = set()
    seen: list[str] = []
    for part in (scope or "").split():
        if part in seen:
            continue
        seen.append(part)
        grant = parse_grant(part)
        if grant is not None:
            grants.append(grant)
        elif not _RESOURCE_SCOPE.match(part):
            other.add(part)
    return Scopes(tuple(grants), frozenset(other), " ".join(seen))


def within(requested: str, allowed: Scopes) -> bool:
    """Whether one requested scope is covered by what a client is allowed to ask for.

    A resource scope is covered by an allowed grant of the same context whose type is equal
    or ``*`` and whose letters include the requested ones, with no constraint the request
    does not also carry; other scopes must be allowed literally.
    """
    grant = parse_grant(requested)
    if grant is None:
        return requested in allowed.other
    for a in allowed.grants:
        if a.context == grant.context and a.type in ("*", grant.type) and grant.letters <= a.letters \
                and set(a.constraint) <= set(grant.constraint):
            return True
    return False


def narrow(requested: str, allowed: Scopes) -> str:
    """The requested scopes a client may have (space separated); the rest are dropped."""
    return " ".join(s for s in parse(requested).text.split() if within(s, allowed))
