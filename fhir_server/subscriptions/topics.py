"""The subscription topics this server publishes (R5 SubscriptionTopic, backported to R4).

A topic names which changes it reports: per resource type, a test of the version before and the
version after a write (``None``: did not exist, or deleted). A Subscription names one topic by its
canonical URL (``Subscription.criteria``) and may narrow it with filters over the parameters the
topic allows (``Task?owner=Practitioner/1``). The list is advertised in the CapabilityStatement
and described in docs/notifications.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fhir_server.auth.consultation import is_consultation
from profiles import CANONICAL

Test = Callable[[dict | None, dict | None], bool]
ROUTING = f"{CANONICAL}/CodeSystem/consultation-routing"  # Task.input type ``candidate``
DEADLINE = f"{CANONICAL}/CodeSystem/deadline-state"  # meta.tag code ``overdue``, set by the deadline sweeper
CRITICAL = frozenset({"AA", "HH", "LL", "HU", "LU", "critical"})  # v3 ObservationInterpretation
FINAL = frozenset({"final", "amended", "corrected", "appended"})
BASED_ON = ("ServiceRequest", "Task")


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    title: str
    description: str
    triggers: dict[str, Test]  # resource type -> (before, after) -> fires
    filters: dict[str, tuple[str, ...]]  # resource type -> the search parameters a Subscription may filter on

    @property
    def url(self) -> str:
        return f"{CANONICAL}/SubscriptionTopic/{self.name}"

    def fires(self, type: str, before: dict | None, after: dict | None) -> bool:
        test = self.triggers.get(type)
        return test is not None and test(before, after)


def _created(before: dict | None, after: dict | None) -> bool:
    return before is None and after is not None


def _changed(before: dict | None, after: dict | None, *paths: str) -> bool:
    return after is not None and (before is None or any(before.get(p) != after.get(p) for p in paths))


def _codes(concepts) -> set[str]:
    return {c.get("code") for cc in concepts or () if isinstance(cc, dict)
            for c in cc.get("coding") or () if isinstance(c, dict)}


def _overdue(resource: dict | None) -> bool:
    return resource is not None and any(isinstance(t, dict) and t.get("system") == DEADLINE and t.get("code") == "overdue"
                                        for t in (resource.get("meta") or {}).get("tag") or ())


def _critical(resource: dict | None) -> bool:
    return resource is not None and bool(_codes(resource.get("interpretation")) & CRITICAL)


def _final(resource: dict | None) -> bool:
    return resource is not None and resource.get("status") in FINAL


def candidate_organizations(resource: dict | None) -> list[str]:
    """The organisations platform matching offered a Task to (``Task.input`` of type
    ``consultation-routing|candidate``, operations/consult/routing.py)."""
    return [i["valueReference"]["reference"] for i in (resource or {}).get("input") or ()
            if isinstance(i, dict) and isinstance(i.get("valueReference"), dict)
            and isinstance(i["valueReference"].get("reference"), str)
            and any(isinstance(c, dict) and (c.get("system"), c.get("code")) == (ROUTING, "candidate")
                    for c in (i.get("type") or {}).get("coding") or ())]


def _routed(before: dict | None, after: dict | None) -> bool:
    """A new owner, or (while it has none) new candidate organisations."""
    if after is None:
        return False
    if after.get("owner"):
        return _changed(before, after, "owner")
    offered = candidate_organizations(after)
    return bool(offered) and offered != candidate_organizations(before)


# A chat message that records a request event (a status or owner change), not a person's words
# (operations/consult/chat.py): mailed as the change itself, not again as a message.
CHAT_EVENT = {"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}


def is_chat_event(resource: dict) -> bool:
    return any(isinstance(c, dict) and c.get("system") == CHAT_EVENT["system"] and c.get("code") == CHAT_EVENT["code"]
               for cat in resource.get("category") or () if isinstance(cat, dict) for c in cat.get("coding") or ())


def _in_chat(resource: dict | None) -> bool:
    for key in ("basedOn", "partOf"):
        for r in (resource or {}).get(key) or ():
            ref = r.get("reference") if isinstance(r, dict) else None
            if isinstance(ref, str) and ref.count("/") >= 1 and ref.split("/")[-2] in BASED_ON:
                return True
    return False


TOPICS: tuple[Topic, ...] = (
    Topic("consultation-request", "Consultation request created",
          "A consultation request (a ServiceRequest with a consultation kind) is created.",
          {"ServiceRequest": lambda b, a: _created(b, a) and is_consultation(a)},
          {"ServiceRequest": ("requester", "performer", "patient", "subject", "priority", "category")}),
    Topic("consultation-routed", "Consultation routed",
          "A consultation Task gets an owner, or another one (routing, claim, transfer), or is offered to "
          "candidate organisations (platform matching).",
          {"Task": _routed},
          {"Task": ("owner", "requester", "patient", "based-on", "status", "candidate")}),
    Topic("task-status", "Task status changed",
          "A Task is created, or its status or business status changes.",
          {"Task": lambda b, a: _changed(b, a, "status", "businessStatus")},
          {"Task": ("owner", "requester", "patient", "based-on", "status", "business-status", "code")}),
    Topic("chat-message", "Message in a request chat",
          "A Communication is posted about a consultation request or its Task (basedOn or partOf).",
          {"Communication": lambda b, a: _created(b, a) and _in_chat(a)},
          {"Communication": ("based-on", "part-of", "recipient", "sender", "patient")}),
    Topic("conclusion", "Conclusion available",
          "A DiagnosticReport or Composition reaches a final status (final, amended, corrected, appended).",
          {"DiagnosticReport": lambda b, a: _final(a) and (b is None or b.get("status") != a.get("status")),
           "Composition": lambda b, a: _final(a) and (b is None or b.get("status") != a.get("status"))},
          {"DiagnosticReport": ("based-on", "patient", "subject", "performer", "code", "category"),
           "Composition": ("patient", "subject", "author", "type", "category")}),
    Topic("deadline-overdue", "Consultation deadline overdue",
          f"A Task is marked overdue (meta.tag {DEADLINE}|overdue) by the deadline sweeper.",
          {"Task": lambda b, a: _overdue(a) and not _overdue(b)},
          {"Task": ("owner", "requester", "patient", "based-on")}),
    Topic("critical-observation", "Critical observation",
          "An Observation is recorded, or changed, with a critical interpretation (AA, HH, LL, HU, LU).",
          {"Observation": lambda b, a: _critical(a) and (not _critical(b) or _changed(b, a, "value", "valueQuantity"))},
          {"Observation": ("patient", "subject", "code", "category", "performer")}),
    Topic("appointment", "Appointment booked or changed",
          "An Appointment is created, or its status, start or end changes.",
          {"Appointment": lambda b, a: _changed(b, a, "status", "start", "end")},
          {"Appointment": ("actor", "patient", "practitioner", "status", "based-on")}),
)

BY_URL: dict[str, Topic] = {t.url: t for t in TOPICS}
WATCHED: frozenset[str] = frozenset(type for t in TOPICS for type in t.triggers)


def fired(type: str, before: dict | None, after: dict | None) -> list[Topic]:
    """The topics a change of a ``type`` resource from ``before`` to ``after`` fires."""
    return [t for t in TOPICS if t.fires(type, before, after)]
