"""E-mail to participants (SPB-4.2, KZ-5, RU-8): who gets one, in which language, and sending it.

For each topic that fires (``topics.py``) the people concerned are read from the focus resource:

- consultation-request: the request's performers; consultation-routed: the Task's new owner,
  or while it is offered (no owner) the coordinators of each candidate organisation (or its
  practitioners' roles when it has no coordinator);
  task-status: the Task's requester and owner; deadline-overdue: those and the coordinators of
  the organisation the Task is with (escalation);
- chat-message: the message's recipients, else the requester and performers of the request it
  is about, never its sender; a request event recorded in the chat (category notification) is
  mailed as the change itself (task-status), not again as a message;
- conclusion: the requester of the request a DiagnosticReport is based on (RU-8), and the patient
  of a doctor-to-patient consultation when the patient requested it; for a diagnostic-result
  request also the diagnostician: the performers and interpreters of the DiagnosticReports and
  ImagingStudies in its ``supportingInfo`` (RU-42);
- appointment: every Patient and Practitioner taking part (the patient gets date and time, KZ-5);
- critical-observation: nobody by default (doctors subscribe to it).

A Practitioner, PractitionerRole, Patient or RelatedPerson is written to at their first
``telecom`` of system ``email`` (lowest ``rank`` first), in English when their
``communication`` language is English and in Russian otherwise, unless they switched e-mail off:
the extension ``EMAIL_OPT_OUT`` (``valueBoolean: true``) on their resource. Which topics send
e-mail at all is configured (``TELEMED_NOTIFY_EMAIL_TOPICS``, RU-54o). Texts come from
``templates/<language>.json``; a mail never carries clinical content beyond a chat message's
text (the link opens the rest behind the login).
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from functools import cache
from pathlib import Path

import aiosmtplib
import orjson

from fhir_server.subscriptions.state import Mail
from fhir_server.subscriptions.topics import is_chat_event
from profiles import CANONICAL

EMAIL_OPT_OUT = f"{CANONICAL}/StructureDefinition/email-opt-out"
PEOPLE = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")


@cache
def templates(language: str) -> dict:
    return json.loads((Path(__file__).with_name("templates") / f"{language}.json").read_text(encoding="utf-8"))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def render(language: str, name: str, fields: dict) -> tuple[str, str]:
    """(subject, text) of template ``name`` in ``language`` (``ru`` or ``en``)."""
    t = templates(language if language in ("ru", "en") else "ru")
    values = _Blank({k: v for k, v in fields.items() if v not in (None, "")})
    return t[name]["subject"].format_map(values), t[name]["text"].format_map(values) + t["footer"]


def _refs(resource: dict, *keys: str) -> list[str]:
    out = []
    for key in keys:
        value = resource.get(key)
        for item in value if isinstance(value, list) else [value]:
            ref = item.get("reference") if isinstance(item, dict) else None
            if isinstance(ref, str) and ref.split("/")[0] in PEOPLE and ref.count("/") == 1:
                out.append(ref)
    return out


async def _read(store, ref: str) -> dict | None:
    if not isinstance(ref, str) or ref.count("/") != 1:
        return None
    type, id = ref.split("/")
    stored = await store.read(type, id)
    return orjson.loads(stored.json) if stored is not None and not stored.deleted else None


async def concerned(store, topic: str, resource: dict) -> list[str]:
    """References to the people a ``topic`` event about ``resource`` is mailed to."""
    if topic == "consultation-request":
        people = _refs(resource, "performer")
    elif topic == "consultation-routed":  # the new owner; while offered, the candidates (offered_to)
        people = _refs(resource, "owner") or await offered_to(store, resource)
    elif topic == "task-status":
        people = _refs(resource, "requester", "owner")
    elif topic == "deadline-overdue":  # escalated to the coordinators of the organisation that has it
        people = _refs(resource, "requester", "owner") + await coordinators(store, resource)
        if not _refs(resource, "owner"):  # nobody has it: the candidates and the requester's coordinators
            people += await offered_to(store, resource) + await requester_coordinators(store, resource)
    elif topic == "chat-message":
        if is_chat_event(resource):  # a request event recorded in the chat: mailed as the change itself
            return []
        people = _refs(resource, "recipient")
        if not people:
            for ref in _refs_any(resource, "basedOn", "partOf"):
                about = await _read(store, ref)
                if about is not None:
                    people += _refs(about, "requester", "performer", "owner")
        sender = set(_refs(resource, "sender"))
        people = [p for p in people if p not in sender]
    elif topic == "conclusion":
        people = []
        for ref in _refs_any(resource, "basedOn"):
            about = await _read(store, ref)
            if about is not None:
                people += _refs(about, "requester") + await diagnosticians(store, about)
    elif topic == "appointment":
        people = [p["actor"]["reference"] for p in resource.get("participant") or ()
                  if isinstance(p, dict) and isinstance(p.get("actor"), dict)
                  and str(p["actor"].get("reference", "")).split("/")[0] in ("Patient", "Practitioner")]
    else:
        people = []
    return list(dict.fromkeys(people))


async def coordinators(store, task: dict) -> list[str]:
    """The coordinators' roles in the organisation a Task is with: its owner, or its owner's."""
    from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
    from fhir_server.search.plan import parse_query

    owner = (task.get("owner") or {}).get("reference") if isinstance(task.get("owner"), dict) else None
    org = owner if isinstance(owner, str) and owner.startswith("Organization/") else None
    if org is None and isinstance(owner, str) and owner.startswith("PractitionerRole/"):
        role = await _read(store, owner)
        org = ((role or {}).get("organization") or {}).get("reference")
    if not org:
        return []
    query = parse_query("PractitionerRole", [("organization", org), ("role", f"{ROLE_SYSTEM}|{COORDINATOR}"),
                                             ("active", "true")], strict=True)
    page = await store.search(query, count=100, cursor=None, total=False)
    return [f"PractitionerRole/{s.id}" for s in page.entries]


async def requester_coordinators(store, task: dict) -> list[str]:
    """The coordinators of the requester's organisation (they route a consultation nobody has)."""
    requester = _refs(task, "requester")
    if not requester or not requester[0].startswith("PractitionerRole/"):
        return []
    role = await _read(store, requester[0])
    org = ((role or {}).get("organization") or {}).get("reference")
    return await coordinators(store, {"owner": {"reference": org}}) if org else []


async def offered_to(store, task: dict) -> list[str]:
    """Per candidate organisation of an offered Task: its coordinators' roles, or its active
    roles when it has no coordinator (who may claim it)."""
    from fhir_server.search.plan import parse_query
    from fhir_server.subscriptions.topics import candidate_organizations

    people: list[str] = []
    for org in candidate_organizations(task):
        found = await coordinators(store, {"owner": {"reference": org}})
        if not found:
            query = parse_query("PractitionerRole", [("organization", org), ("active", "true")], strict=True)
            found = [f"PractitionerRole/{s.id}" for s in (await store.search(query, count=100, cursor=None,
                                                                               total=False)).entries]
        people += found
    return people


async def diagnosticians(store, request: dict) -> list[str]:
    """For a diagnostic-result consultation (RU-42): who made the results it is about, the
    performers and interpreters of the DiagnosticReports and ImagingStudies in its supportingInfo."""
    from fhir_server.auth.consultation import KIND

    if not any(c.get("system") == KIND and c.get("code") == "diagnostic-result"
               for cat in request.get("category") or () if isinstance(cat, dict) for c in cat.get("coding") or ()):
        return []
    people: list[str] = []
    for ref in _refs_any(request, "supportingInfo"):
        if ref.split("/")[0] in ("DiagnosticReport", "ImagingStudy") and (result := await _read(store, ref)):
            people += _refs(result, "performer", "resultsInterpreter", "interpreter")
            people += [p["actor"]["reference"] for s in result.get("series") or () if isinstance(s, dict)
                       for p in s.get("performer") or () if isinstance(p, dict) and isinstance(p.get("actor"), dict)
                       and str(p["actor"].get("reference", "")).split("/")[0] in PEOPLE]
    return people


def _refs_any(resource: dict, *keys: str) -> list[str]:
    return [r["reference"] for k in keys for r in resource.get(k) or ()
            if isinstance(r, dict) and isinstance(r.get("reference"), str) and r["reference"].count("/") == 1]


def address(person: dict) -> str | None:
    mails = [t for t in person.get("telecom") or () if isinstance(t, dict) and t.get("system") == "email"
             and isinstance(t.get("value"), str) and "@" in t["value"]]
    mails.sort(key=lambda t: t.get("rank") if isinstance(t.get("rank"), int) else 1 << 30)
    return mails[0]["value"] if mails else None


def opted_out(person: dict) -> bool:
    return any(isinstance(e, dict) and e.get("url") == EMAIL_OPT_OUT and e.get("valueBoolean") is True
               for e in person.get("extension") or ())


def language(person: dict) -> str:
    for c in person.get("communication") or ():
        concept = c.get("language") if isinstance(c, dict) and "language" in c else c
        for coding in (concept or {}).get("coding") or () if isinstance(concept, dict) else ():
            if isinstance(coding, dict) and str(coding.get("code", "")).lower().startswith("en"):
                return "en"
    return "ru"


def display_name(person: dict) -> str:
    for n in person.get("name") or () if isinstance(person.get("name"), list) else [person.get("name")]:
        if isinstance(n, dict):
            if n.get("text"):
                return n["text"]
            return " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
    return ""


async def recipient(store, ref: str) -> tuple[dict, str] | None:
    """The person to write to for ``ref`` and their address; None: no address, or switched off."""
    person = await _read(store, ref)
    if person is None or opted_out(person):
        return None
    mail = address(person)
    if mail is None and person.get("resourceType") == "PractitionerRole":
        practitioner = await _read(store, (person.get("practitioner") or {}).get("reference"))
        if practitioner is None or opted_out(practitioner):
            return None
        person, mail = practitioner, address(practitioner)
    return (person, mail) if mail else None


def fields(topic: str, resource: dict, link: str) -> dict:
    focus = f"{resource.get('resourceType')}/{resource.get('id')}"
    status = resource.get("status")
    business = (resource.get("businessStatus") or {}).get("text") if isinstance(resource.get("businessStatus"), dict) else None
    due = ((resource.get("restriction") or {}).get("period") or {}).get("end") if isinstance(resource.get("restriction"), dict) else None
    about = ", ".join(_refs_any(resource, "basedOn", "partOf")) or focus
    message = "\n".join(p["contentString"] for p in resource.get("payload") or ()
                        if isinstance(p, dict) and isinstance(p.get("contentString"), str))
    return {"focus": focus, "status": business or status, "due": due, "priority": resource.get("priority"),
            "start": resource.get("start"), "end": resource.get("end"), "about": about, "message": message,
            "link": link}


async def mails_for(store, topic: str, resource: dict, source: str, link: str) -> list[Mail]:
    out = []
    for ref in await concerned(store, topic, resource):
        found = await recipient(store, ref)
        if found is None:
            continue
        person, to = found
        subject, text = render(language(person), topic, fields(topic, resource, link) | {"name": display_name(person)})
        # One mail per change and person: the first topic that concerns them (``TOPICS`` order) says it.
        out.append(Mail(key=f"{source}/{ref}", to=to, subject=subject, text=text))
    return out


async def send(settings, mail: Mail) -> None:
    """Send one mail through the configured SMTP server (raises when it is not accepted)."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message.set_content(mail.text)
    await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port,
                          username=settings.smtp_username or None, password=settings.smtp_password or None,
                          start_tls=settings.smtp_starttls, timeout=settings.smtp_timeout)
