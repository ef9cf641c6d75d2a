"""The steps every ``Task/{id}/$...`` consultation operation shares.

``operate`` reads the Parameters against the operation's definition, identifies the caller,
and commits in one storage transaction: the changed Task (expecting the version it read, so of
two concurrent calls one wins and the other is planned again and sees the new state), what the
operation adds (a Communication, the revoked request), a Provenance of the change (agent: the
actor, and whoever else ``Change.agents`` names) and the AuditEvent. The answer is the Task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import audited
from fhir_server.auth import consultation
from fhir_server.auth.access import Access, for_request
from fhir_server.errors import conflict, forbidden, not_found, unprocessable
from fhir_server.interactions.respond import preflight, resource_response
from fhir_server.services import Services
from fhir_server.storage.port import Stored, Write
from fhir_server.write import Planned, accept, as_stored, check_id, commit_planned, new_id, new_version
from operations import parameters
from operations.consult import caller, chat
from operations.consult.codes import DATA_OPERATION, PARTICIPANT_TYPE, business_code, is_consult_task
from operations.consult.deadline import instant


@dataclass(slots=True)
class Change:
    """One call of an operation on one Task: what it read, and what it decides to write."""

    svc: Services
    me: caller.Caller
    stored: Stored
    task: dict  # the Task being changed (in place)
    params: dict[str, list]
    now: datetime
    actor: str = ""  # who acts (the caller's role, or their fhirUser); the Provenance's performer
    reason: str | None = None  # why (Provenance.reason)
    agents: list[tuple[str, str]] = field(default_factory=list)  # other Provenance agents: (reference, type)
    writes: list[Write] = field(default_factory=list)

    async def add(self, resource: dict) -> str:
        """A new resource written with the Task; answers its reference."""
        id = new_id()
        await consultation.stamp(self.svc.store, resource, id)
        self.writes.append(new_version(accept(resource, None, self.svc.settings.max_depth), id, 1, "POST",
                                       instant(self.now)))
        return f"{resource['resourceType']}/{id}"

    async def replace(self, current: Stored, resource: dict) -> None:
        """A new version of another resource, expecting ``current`` to be still current."""
        await consultation.stamp(self.svc.store, resource, current.id)
        self.writes.append(new_version(resource, current.id, current.version + 1, "PUT", instant(self.now)))


Decide = Callable[[Change], Awaitable[None]]


def require_status(change: Change, *allowed: str) -> None:
    """409 unless the Task is in one of the ``allowed`` states."""
    status = change.task.get("status")
    if status not in allowed:
        raise conflict(f"Task/{change.stored.id} is {status}; this operation needs it {' or '.join(allowed)}",
                       "Task.status")


def not_allowed(message: str) -> Exception:
    return forbidden(message, "fhirUser")


def reference(value: dict | None) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


async def owner_organization(svc: Services, task: dict) -> str | None:
    """The organisation the Task is with: its owner, or its owner role's organisation."""
    owner = reference(task.get("owner")) or ""
    if owner.startswith("Organization/"):
        return owner
    if owner.startswith("PractitionerRole/"):
        stored = await svc.store.read("PractitionerRole", owner.split("/", 1)[1])
        if stored is not None and not stored.deleted:
            return caller.organization(orjson.loads(stored.json))
    return None


async def _load(svc: Services, access: Access, id: str, me: caller.Caller) -> tuple[Stored, dict]:
    """The ConsultTask, if the caller may see it: as a participant, or as a member of the
    organisation it is offered to (its owner is that Organization). A member of the owner's
    organisation who takes no part in it gets 409 (it was taken by a colleague), others 404."""
    rule = access.rule("Task", "u")
    stored = await svc.store.read("Task", id)
    task = orjson.loads(stored.json) if stored is not None and not stored.deleted else None
    if task is None:
        raise not_found(f"Task/{id} is not known", f"Task/{id}")
    if not await access.permits(rule, stored):
        org = await owner_organization(svc, task)
        if not me.roles_in(org):
            raise not_found(f"Task/{id} is not known", f"Task/{id}")
        if not (reference(task.get("owner")) or "").startswith("Organization/"):
            # a colleague who lost the race to take it: the state, not the content, is revealed
            raise conflict(f"Task/{id} was taken into work by another practitioner of {org}", "Task.owner")
    if not is_consult_task(task):
        raise unprocessable(f"Task/{id} is not a consultation Task (ConsultTask)", f"Task/{id}")
    return stored, task


def provenance(change: Change, version: int, activity: str) -> dict:
    id = change.stored.id
    agents = [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer"}]},
               "who": {"reference": change.actor or change.me.user}}]
    agents += [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": kind}]}, "who": {"reference": ref}}
               for ref, kind in change.agents if ref != (change.actor or change.me.user)]
    out = {"resourceType": "Provenance", "target": [{"reference": f"Task/{id}/_history/{version}"}],
           "recorded": instant(change.now), "agent": agents,
           "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE"}], "text": activity}}
    if change.reason:
        out["reason"] = [{"text": change.reason}]
    return out


# Operations that write their own chat message ($request-info's question, $provide-info's answer).
TALKING = frozenset({"request-info", "provide-info"})


async def _tell_chat(change: Change, code: str) -> None:
    """A change of business status or owner as an event in the consultation's chat (SPB-4.2)."""
    task = change.task
    display = (task.get("businessStatus") or {}).get("text") or business_code(task)
    text = f"{display} (Task/${code} by {change.actor or change.me.user})"
    if change.reason:
        text += f": {change.reason}"
    message = chat.event(task, change.stored.id, change.actor or change.me.user, text, instant(change.now))
    if message is not None:
        await change.add(message)


async def operate(request: Request, svc: Services, opdef: dict, decide: Decide) -> Response:
    """Run a ``Task/{id}/$op``: ``decide`` checks role and state and changes ``Change.task``."""
    id = request.path_params["id"]
    check_id(id)
    preflight(request)
    params = await parameters.read(request, opdef, svc.settings.max_body_bytes, svc.settings.max_depth)
    access = await for_request(request, svc)
    me = await caller.of(svc, access)

    async def plan() -> Planned:
        stored, task = await _load(svc, access, id, me)
        before = (business_code(task), reference(task.get("owner")))
        change = Change(svc, me, stored, task, params, datetime.now(timezone.utc))
        await decide(change)
        task["lastModified"] = instant(change.now)
        if (business_code(task), reference(task.get("owner"))) != before and opdef["code"] not in TALKING:
            await _tell_chat(change, opdef["code"])
        accept(task, "Task", svc.settings.max_depth)
        await consultation.stamp(svc.store, task, id)
        write = new_version(task, id, stored.version + 1, "PUT", instant(change.now))
        await change.add(provenance(change, write.version, f"Task/${opdef['code']}"))
        return Planned(200, as_stored(write), [write, *change.writes])

    done = await commit_planned(svc.store, audited(request, "operation", plan))
    return resource_response(request, svc, done.stored, done.status)
