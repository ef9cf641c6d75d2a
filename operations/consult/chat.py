"""The chat of a consultation (SPB-3.4, SPB-4.2, RU-58): a thread of messages among its participants.

A message (ConsultMessage) is a ``Communication`` ``basedOn`` the consultation request (its
``ServiceRequest``; ``partOf`` or ``basedOn`` its Task also counts), with text
(``payload.contentString``) or files (``payload.contentAttachment``, or ``payload.contentReference``
to a DocumentReference or Binary of the same consultation). The thread is
``GET Communication?based-on=ServiceRequest/{id}&_sort=sent``. Its access tag
(``fhir_server.auth.consultation``) makes every message part of the consultation, so only its
participants read or post one (``fhir_server.auth.access``). ``ServiceRequest/$submit`` opens the
thread with a first message in the same transaction (``opening``); the operations' own messages
(``$request-info``, ``$provide-info``) are in it too. Participants post with a plain
``POST Communication``, checked by ``admit`` (called from create, update and patch planning):

- the message gets the ConsultMessage profile; ``sent`` is the time the server received it; a
  message about the Task only is also made ``basedOn`` the request, so the thread holds it;
- ``sender`` is the caller (set when absent; naming anyone else is 422 ``Communication.sender``);
- a closed consultation (request completed, revoked or entered in error) takes no new message
  (409 ``Communication.basedOn``): its chat is kept read-only, as the record;
- a file given by reference must be a DocumentReference or Binary of the same consultation (422);
- a posted message stays as posted (RU-58: chats are part of the record): a PUT or PATCH that
  changes its sender, time, text, files, recipients or what it is about is 422.

System clients (``system/`` grants: gateways, data migration) are trusted and pass unchecked, as
access control trusts them (docs/security.md).
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from fhir_server.auth import consultation
from fhir_server.auth.access import Access
from fhir_server.errors import conflict, unprocessable
from fhir_server.storage.port import Stored, Write
from fhir_server.subscriptions.topics import CHAT_EVENT, _in_chat as in_chat
from fhir_server.write import accept, new_id, new_version
from operations.consult import caller
from operations.consult.codes import business_status
from operations.consult.deadline import instant
from profiles import CANONICAL

CONSULT_MESSAGE = f"{CANONICAL}/StructureDefinition/ConsultMessage"
CLOSED = frozenset({"completed", "revoked", "entered-in-error"})  # request states that close the chat
KEPT = ("sender", "sent", "payload", "basedOn", "partOf", "recipient", "subject", "about")
FILES = ("DocumentReference", "Binary")


def thread(request_id: str) -> str:
    """The search that reads a consultation's chat, oldest message first."""
    return f"Communication?based-on=ServiceRequest/{request_id}&_sort=sent"


async def opening(svc, request: dict, request_id: str, task_id: str, at: str) -> Write:
    """The first message of a new consultation's chat, from its requester, written by ``$submit``."""
    what = (request.get("code") or {}).get("text") or "consultation"
    message = {
        "resourceType": "Communication", "meta": {"profile": [CONSULT_MESSAGE]}, "status": "completed",
        "basedOn": [{"reference": f"ServiceRequest/{request_id}"}], "about": [{"reference": f"Task/{task_id}"}],
        "subject": request.get("subject"), "sent": at, "sender": request.get("requester"),
        "reasonCode": [business_status("awaiting-acceptance")],
        "payload": [{"contentString": f"Request submitted: {what} ({request.get('priority')})"}],
    }
    message = accept({k: v for k, v in message.items() if v is not None}, "Communication", svc.settings.max_depth)
    id = new_id()
    await consultation.stamp(svc.store, message, id)
    return new_version(message, id, 1, "POST", at)


def event(task: dict, task_id: str, sender: str, text: str, at: str) -> dict | None:
    """A message recording a request event in its chat (SPB-4.2: "users are notified of request
    events in the chat"): category notification, the Task's new business status as reasonCode.
    None for a Task of no request. Its participants are mailed about the change itself
    (``task-status``), not about this message."""
    request = next((r["reference"] for r in task.get("basedOn") or ()
                    if isinstance(r, dict) and str(r.get("reference", "")).startswith("ServiceRequest/")), None)
    if request is None:
        return None
    message = {"resourceType": "Communication", "meta": {"profile": [CONSULT_MESSAGE]}, "status": "completed",
               "category": [{"coding": [CHAT_EVENT]}], "basedOn": [{"reference": request}],
               "about": [{"reference": f"Task/{task_id}"}], "subject": task.get("for"), "sent": at,
               "sender": {"reference": sender}, "reasonCode": [task["businessStatus"]] if task.get("businessStatus") else None,
               "payload": [{"contentString": text}]}
    return {k: v for k, v in message.items() if v is not None}


def is_message(resource: dict) -> bool:
    """A Communication of a consultation's chat (after ``consultation.stamp``)."""
    code = consultation.tag_of(resource)
    return (resource.get("resourceType") == "Communication" and code not in (None, consultation.OPEN)
            and in_chat(resource))


async def admit(svc, access: Access, current: Stored | None, resource: dict) -> None:
    """Check (and complete) a chat message about to be written; other resources pass."""
    if resource.get("resourceType") != "Communication":
        return
    if access.rule("Communication", "c" if current is None else "u").system:
        return  # system clients (gateways, migrations) are trusted, as access control trusts them
    before = orjson.loads(current.json) if current is not None and not current.deleted else None
    if before is not None and is_message(before):
        changed = [k for k in KEPT if before.get(k) != resource.get(k)]
        if changed:
            raise unprocessable(f"Communication/{current.id} is a message of a consultation chat, kept as posted "
                                f"(RU-58): its {', '.join(changed)} cannot change",
                                [f"Communication.{k}" for k in changed])
    if not is_message(resource):
        return
    profiles = resource.setdefault("meta", {}).setdefault("profile", [])
    if CONSULT_MESSAGE not in profiles:
        profiles.append(CONSULT_MESSAGE)
    if before is not None or not await access.permits(access.rule("Communication", "c"), resource=resource):
        return  # an outsider: refused by the access check that follows (403), told nothing more
    await _sender(svc, access, resource)
    resource["sent"] = instant(datetime.now(timezone.utc))
    code = consultation.tag_of(resource)
    if {"reference": code} not in resource.setdefault("basedOn", []):
        resource["basedOn"].append({"reference": code})  # about the Task only: the thread holds it too
    stored = await svc.store.read(*code.split("/", 1))
    status = orjson.loads(stored.json).get("status") if stored is not None and not stored.deleted else None
    if status in CLOSED:
        raise conflict(f"The consultation {code} is {status}: its chat takes no new messages", "Communication.basedOn")
    await _files(svc, resource, code)


async def _sender(svc, access: Access, resource: dict) -> None:
    who = access.who
    if who.user_type in ("Practitioner", "PractitionerRole"):
        mine = (await caller.of(svc, access)).refs
    else:
        mine = frozenset({who.fhir_user} if who.fhir_user else ())
    if not mine:
        raise unprocessable("Posting to a consultation chat needs a token that names its user (fhirUser)",
                            "Communication.sender")
    sender = resource.get("sender")
    if sender is None:
        resource["sender"] = {"reference": who.fhir_user}
    elif not (isinstance(sender, dict) and sender.get("reference") in mine):
        raise unprocessable(f"The sender of a chat message must be the caller ({', '.join(sorted(mine))})",
                            "Communication.sender")


async def _files(svc, resource: dict, code: str) -> None:
    """Files given by reference must belong to the same consultation (else the participants could
    not open them, or the message would point into another consultation)."""
    for n, part in enumerate(resource.get("payload") or ()):
        if not isinstance(part, dict):
            continue
        ref = (part.get("contentReference") or {}).get("reference")
        where = f"Communication.payload[{n}].contentReference"
        if ref is None:
            url = (part.get("contentAttachment") or {}).get("url")
            ref = url if isinstance(url, str) and url.split("/")[0] in FILES and url.count("/") == 1 else None
            where = f"Communication.payload[{n}].contentAttachment.url"
        if ref is None:
            continue
        type, _, id = ref.partition("/")
        found = await svc.store.read(type, id) if type in FILES and id else None
        if found is None or found.deleted or consultation.tag_of(orjson.loads(found.json)) != code:
            raise unprocessable(f"{ref} is not a DocumentReference or Binary of the consultation {code} (link it to "
                                "the request: DocumentReference.context.related, Binary.securityContext)", where)
