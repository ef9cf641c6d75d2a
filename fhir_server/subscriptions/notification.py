"""Notification Bundles (Subscriptions R5 Backport IG, R4: ``backport-subscription-notification-r4``).

A Bundle of type ``history``: first a Parameters resource (``backport-subscription-status-r4``:
subscription, topic, status, type, events-since-subscription-start, one ``notification-event``
per event with its number, timestamp and focus), then, for ``full-resource`` payloads, each
focus as it was at the event. The focus of an event is named, and its content sent, only when
the subscription's grant may read it at the time of sending (``grant_of``); otherwise the event
is sent with its number and timestamp alone.

References are absolute when ``TELEMED_BASE_URL`` is set, else relative to the FHIR base.
"""

from __future__ import annotations

import uuid

import orjson

from fhir_server.auth.access import Access
from fhir_server.storage.port import Stored
from fhir_server.subscriptions.state import Event
from fhir_server.subscriptions.subscription import Parsed
from fhir_server.write import now_instant

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"


def _ref(base: str, path: str) -> str:
    return f"{base}/{path}" if base else path


async def visible_focus(svc, sub: Parsed, event: Event) -> Stored | None:
    """The focus version of ``event`` when the subscription's grant may read it (a deletion: the
    version before it), else None."""
    if sub.owner is None:
        return None
    type, id = event.focus.split("/", 1)
    stored = await svc.store.vread(type, id, event.version)
    if stored is None:
        return None
    checked = stored
    if stored.deleted:
        checked = await svc.store.vread(type, id, event.version - 1) if event.version > 1 else None
        if checked is None:
            return None
    return stored if await Access(svc, sub.owner).visible(checked) else None


def status_parameters(base: str, sub: Parsed, status: str, kind: str, since_start: int,
                      events: list[tuple[Event, Stored | None]], error: str | None = None) -> dict:
    params = [
        {"name": "subscription", "valueReference": {"reference": _ref(base, f"Subscription/{sub.id}")}},
        {"name": "topic", "valueCanonical": sub.topic.url},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    for event, focus in events:
        part = [{"name": "event-number", "valueString": str(event.number)},
                {"name": "timestamp", "valueInstant": event.at}]
        if focus is not None and sub.content != "empty":
            part.append({"name": "focus", "valueReference": {"reference": _ref(base, event.focus)}})
        params.append({"name": "notification-event", "part": part})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()), "meta": {"profile": [STATUS_PROFILE]},
            "parameter": params}


def bundle(base: str, sub: Parsed, status: str, kind: str, since_start: int,
           events: list[tuple[Event, Stored | None]], error: str | None = None) -> bytes:
    """The notification (``kind``: handshake, heartbeat, event-notification, query-status,
    query-event) as JSON bytes."""
    head = status_parameters(base, sub, status, kind, since_start, events, error)
    entries = [{"fullUrl": f"urn:uuid:{head['id']}", "resource": head,
                "request": {"method": "GET", "url": _ref(base, f"Subscription/{sub.id}/$status")},
                "response": {"status": "200"}}]
    if sub.content == "full-resource":
        for event, focus in events:
            if focus is None:
                continue
            entry = {"fullUrl": _ref(base, event.focus)}
            if focus.deleted:
                entry["request"] = {"method": "DELETE", "url": event.focus}
                entry["response"] = {"status": "204"}
            else:
                entry["resource"] = orjson.Fragment(focus.json)
                created = event.version == 1
                entry["request"] = {"method": "POST" if created else "PUT",
                                    "url": focus.type if created else event.focus}
                entry["response"] = {"status": "201" if created else "200",
                                     "etag": f'W/"{focus.version}"', "lastModified": focus.last_updated}
            entries.append(entry)
    return orjson.dumps({"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [NOTIFICATION_PROFILE]},
                         "type": "history", "timestamp": now_instant(), "entry": entries})
