"""Which studies a caller may see through /dicomweb.

A study is visible when an ImagingStudy carries its Study Instance UID as an identifier
(system ``urn:dicom:uid``, value ``urn:oid:<uid>``) and
- is referenced from ``ServiceRequest.supportingInfo`` of a consultation the caller takes part
  in, or from the ``input`` of a Task of that consultation (``auth.participants``), or
- is in the compartment of a patient the token grants (``ImagingStudy.subject``): the user's
  own when the ``fhirUser`` is a Patient, the launch patient of ``patient/`` scopes.
A ``system/`` grant on ImagingStudy (a gateway, a registry) sees every study, linked or not.
No read grant on ImagingStudy at all is 403. Anything else is not visible: it answers 404, as
if the PACS did not have it.

QIDO-RS and WADO-RS reuse a caller's visible studies for ``VISIBLE_SECONDS`` (``Seen``, per
token): a viewer sends many requests per study, and the lookups (the caller's consultations,
their requests and Tasks, the linked ImagingStudies) cost more than the rest of a QIDO-RS.
So a link made or removed through the FHIR API, or a participant added to or removed from a
consultation, shows in DICOMweb at most that late, as a token revocation does (auth.bearer).
A STOW-RS through this proxy forgets every caller's studies at once (it makes links), and
STOW-RS itself always looks them up afresh.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from dicomweb import audit
from fhir_server.auth.access import Access
from fhir_server.errors import invalid, not_found
from fhir_server.auth.tokens import insufficient_scope
from fhir_server.search.plan import parse_query

UID_SYSTEM = "urn:dicom:uid"
VISIBLE_SECONDS = 2.0
VISIBLE_CALLERS = 4096


@dataclass(frozen=True, slots=True)
class Study:
    """A visible study's FHIR side: its ImagingStudy and patient (for the audit record)."""

    imaging_study: str | None
    patient: str | None


@dataclass(frozen=True, slots=True)
class Visible:
    everything: bool
    studies: dict[str, Study] = field(default_factory=dict)  # study UID -> FHIR side

    def sees(self, uid: str) -> bool:
        return self.everything or uid in self.studies


def uid_of(resource: dict) -> str | None:
    """The Study Instance UID an ImagingStudy names (``urn:dicom:uid`` identifier)."""
    for ident in resource.get("identifier") or ():
        value = ident.get("value") if isinstance(ident, dict) else None
        if ident.get("system") == UID_SYSTEM and isinstance(value, str):
            return value.removeprefix("urn:oid:")
    return None


def identifier_token(uid: str) -> str:
    return f"{UID_SYSTEM}|urn:oid:{uid}"


async def _search(svc, type: str, items: list[tuple[str, str]]) -> list:
    query = parse_query(type, items, strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    return page.entries


def _study(resource: dict, id: str) -> tuple[str, Study] | None:
    uid = uid_of(resource)
    if uid is None:
        return None
    subject = (resource.get("subject") or {}).get("reference")
    return uid, Study(f"ImagingStudy/{id}", subject if isinstance(subject, str) and subject.startswith("Patient/")
                      else None)


class Seen:
    """Callers' visible studies kept for ``max_age`` seconds, keyed by their access token."""

    def __init__(self, max_age: float = VISIBLE_SECONDS, size: int = VISIBLE_CALLERS):
        self.max_age, self.size = max_age, size
        self._entries: OrderedDict[tuple, tuple[float, Visible]] = OrderedDict()

    @staticmethod
    def key(who) -> tuple:
        return (who.issuer, who.subject, who.client_id, who.token_id, who.fhir_user, who.patient,
                str(who.claims.get("scope")), who.expires)

    def get(self, who) -> Visible | None:
        key = self.key(who)
        found = self._entries.get(key)
        if found is None:
            return None
        if time.monotonic() - found[0] > self.max_age:
            del self._entries[key]
            return None
        return found[1]

    def put(self, who, seen: Visible) -> None:
        key = self.key(who)
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic(), seen)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


async def visible(access: Access, seen: Seen | None = None) -> Visible:
    """The studies ``access``'s caller may see: looked up once per request, or taken from
    ``seen`` when it knows them from the last ``VISIBLE_SECONDS``."""
    who = access.who
    grants = who.scopes.matching("ImagingStudy", "r")
    if not grants:
        raise insufficient_scope("The access token does not grant read on ImagingStudy, which DICOMweb needs",
                                 "user/ImagingStudy.r or patient/ImagingStudy.r")
    if any(g.context == "system" for g in grants):
        return Visible(True)
    if seen is not None:
        known = seen.get(who)
        if known is None:
            known = await _lookup(access, grants)
            seen.put(who, known)
        return known
    return await _lookup(access, grants)


async def _lookup(access: Access, grants) -> Visible:
    svc, who = access.svc, access.who
    found: dict[str, Study] = {}
    patients: set[str] = set()
    if who.user_type == "Patient":
        patients.add(who.fhir_user)
    elif who.patient and any(g.context == "patient" for g in grants):
        patients.add(f"Patient/{who.patient}")
    ids: set[str] = set()
    if who.user_type != "Patient":
        requests = sorted(c.split("/", 1)[1] for c in await access.consultations())
        if requests:
            for s in await svc.store.read_many("ServiceRequest", requests):
                _linked(orjson.loads(s.json).get("supportingInfo"), ids)
            tasks = await _search(svc, "Task", [("based-on", ",".join(f"ServiceRequest/{r}" for r in requests))])
            for s in tasks:
                for item in orjson.loads(s.json).get("input") or ():
                    _linked([item.get("valueReference")] if isinstance(item, dict) else [], ids)
    studies = list(await svc.store.read_many("ImagingStudy", sorted(ids))) if ids else []
    if patients:
        studies += await _search(svc, "ImagingStudy", [("subject", ",".join(sorted(patients)))])
    for s in studies:
        one = _study(orjson.loads(s.json), s.id)
        if one is not None:
            found[one[0]] = one[1]
    return Visible(False, found)


def _linked(refs, ids: set[str]) -> None:
    """Ids of the ImagingStudies among ``refs`` (relative, absolute or versioned references)."""
    for ref in refs or ():
        value = ref.get("reference") if isinstance(ref, dict) else None
        parts = value.split("/_history")[0].split("/") if isinstance(value, str) else []
        if len(parts) >= 2 and parts[-2] == "ImagingStudy":
            ids.add(parts[-1])


async def fhir_side(svc, uid: str) -> Study | None:
    """The ImagingStudy naming ``uid`` (for callers that see everything), None when there is none."""
    entries = await _search(svc, "ImagingStudy", [("identifier", identifier_token(uid))])
    for s in entries:
        one = _study(orjson.loads(s.json), s.id)
        if one is not None:
            return one[1]
    return None


UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(value: str, what: str) -> str:
    if len(value) > 64 or not UID_RE.match(value):
        raise invalid(f"'{value[:80]}' is not a DICOM UID", what)
    return value


async def require_study(request, access: Access, uid: str, service: str,
                        cache: Seen | None = None) -> tuple[Visible, dict]:
    """The caller's visible studies, when they include ``uid``; else an audited 404."""
    check_uid(uid, "StudyInstanceUID")
    seen = await visible(access, cache)
    if not seen.sees(uid):
        audit.record(request, access.svc, access.who, service, {uid: None}, "4",
                     "The study is not linked to a consultation or patient the caller may see")
        raise not_found(f"Study {uid} is not known", "StudyInstanceUID")
    side = seen.studies.get(uid) if not seen.everything else await fhir_side(access.svc, uid)
    return seen, {uid: side}
