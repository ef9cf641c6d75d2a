"""A consilium (UA-VI.17, RU-25): one request to two or more consultants at once.

``$submit`` of a request of kind ``consilium`` names its seats with the repeated parameter
``participant`` (two or more Organizations; an organisation named twice offers two seats). It
creates the coordinating ConsultTask (no owner: it is offered to nobody itself and cannot be
accepted or routed) and one child ConsultTask per seat (``partOf`` the coordinating one,
offered to the seat's organisation), each accepted with ``$accept`` by a practitioner of that
organisation. Their roles become the consilium's members: they take part in the consultation
(they own a Task of it) and so see everything of it, the protocol included.

One member, the chair, completes the coordinating Task (``$complete``) once no seat is still
waiting: the protocol lists every member who accepted as an attester (a refused or cancelled
seat is left out; at least two members are needed). The coordinating Task shows the requester
``in-progress`` (awaiting signatures) until the last signature completes it and every seat.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from fhir_server.errors import conflict, invalid, unprocessable
from fhir_server.search.plan import parse_query
from fhir_server.auth import consultation
from fhir_server.storage.port import Stored, Write
from fhir_server.write import accept, new_id, new_version
from operations import parameters
from operations.consult import routing
from operations.consult.codes import KIND

PARTICIPANT = "Parameters.parameter.where(name='participant')"
CONSILIUM = "consilium"
OPEN = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


def is_consilium(task: dict) -> bool:
    return any(c.get("system") == KIND and c.get("code") == CONSILIUM for c in (task.get("code") or {}).get("coding") or ())


def is_coordinating(task: dict) -> bool:
    return is_consilium(task) and not task.get("partOf")


async def participants(svc, sr: dict, params: dict[str, list], now: datetime) -> list[str]:
    """The seats' organisations of a consilium request (none for another kind): each a known
    Organization consulting for the requester's organisation under an active agreement (CN-10,
    as a direct invitation), two or more, and no ``organization`` beside them."""
    refs = [(p.get("reference") or "") for p in params.get("participant") or ()]
    consilium = any(c.get("system") == KIND and c.get("code") == CONSILIUM
                    for cat in sr.get("category") or () for c in cat.get("coding") or ())
    if not consilium:
        if refs:
            raise unprocessable("Only a consilium request (category consilium) names participants", PARTICIPANT)
        return []
    if parameters.one(params, "organization") is not None:
        raise invalid("A consilium names its participants, not one organization",
                      "Parameters.parameter.where(name='organization')")
    if len(refs) < 2:
        raise unprocessable("A consilium is sent to two or more consultants: name two or more participants",
                            PARTICIPANT)
    for n, ref in enumerate(refs):
        type, _, id = ref.partition("/")
        stored = await svc.store.read("Organization", id) if type == "Organization" and id else None
        if stored is None or stored.deleted:
            raise unprocessable(f"The participant '{ref}' is not a known Organization", f"{PARTICIPANT}[{n}]")
        if not await routing.agreed(svc, sr, ref, now):
            raise unprocessable(f"There is no active agreement under which {ref} consults for the requester's "
                                "organisation (CN-10)", f"{PARTICIPANT}[{n}]")
    return refs


def seat(coordinating: dict, coordinating_id: str, organization: str, n: int, of: int) -> dict:
    """The child Task of one seat: the coordinating Task's request, patient, priority and due
    time, offered to ``organization``."""
    task = {k: v for k, v in coordinating.items() if k not in ("id", "meta", "owner")}
    task.update(meta={"profile": coordinating["meta"]["profile"]}, owner={"reference": organization},
                partOf=[{"reference": f"Task/{coordinating_id}"}], description=f"Consilium seat {n} of {of}")
    return task


async def open_seats(svc, coordinating: dict, coordinating_id: str, organizations: list[str], at: str) -> list[Write]:
    """The child Tasks of a new coordinating Task, one per seat."""
    out = []
    for n, organization in enumerate(organizations, 1):
        task = accept(seat(coordinating, coordinating_id, organization, n, len(organizations)), "Task",
                      svc.settings.max_depth)
        id = new_id()
        await consultation.stamp(svc.store, task, id)
        out.append(new_version(task, id, 1, "POST", at))
    return out


async def seats(svc, coordinating_id: str) -> list[tuple[Stored, dict]]:
    """The child Tasks of a coordinating Task, in the order of their seats."""
    query = parse_query("Task", [("part-of", f"Task/{coordinating_id}")], strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    out = [(s, orjson.loads(s.json)) for s in page.entries]
    return sorted(out, key=lambda item: _seat_number(item[1]))


def _seat_number(task: dict) -> int:
    words = str(task.get("description") or "").split()
    return int(words[2]) if len(words) > 2 and words[2].isdigit() else 0


def members(children: list[tuple[Stored, dict]], coordinating_id: str) -> list[str]:
    """The members' roles (owners of the accepted seats); 409 while a seat still waits, or when
    fewer than two accepted."""
    waiting = [s.id for s, t in children if t.get("status") in OPEN and t.get("status") != "in-progress"]
    if waiting:
        raise conflict(f"Consilium Task/{coordinating_id} still waits for its seat(s) "
                       f"{', '.join('Task/' + w for w in waiting)}: each must be accepted (or refused) first",
                       "Task.status")
    roles = [(t.get("owner") or {}).get("reference") for _, t in children if t.get("status") == "in-progress"]
    roles = list(dict.fromkeys(r for r in roles if r))
    if len(roles) < 2:
        raise conflict(f"Consilium Task/{coordinating_id} has {len(roles)} member(s); a consilium needs two or more",
                       "Task.status")
    return roles
