"""Task/{id}/$complete: the consultant writes the result (RU-24, KZ-3, SPB-3.6).

The owner of an in-progress consultation (for a consilium: one of its members, on the
coordinating Task) sends the conclusion form, or a scanned conclusion signed by hand. One
transaction writes the ConsultConclusion DiagnosticReport and the ConsultProtocol Composition
(``conclusion``), both ``preliminary``, refers to them from ``Task.output`` and sets the
business status ``awaiting-signatures``; the Task stays ``in-progress`` until the last signature
(``$sign``) completes the consultation. Until the first signature ``$complete`` may be called
again: it replaces the conclusion and the protocol (new versions, same protocol number); after
it, 409 (a signed protocol is not edited).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import conflict, unprocessable
from fhir_server.services import Services
from operations import parameters
from operations.consult import caller, conclusion, consilium, signatures
from operations.consult.codes import business_code, business_status
from operations.consult.deadline import instant
from operations.consult.task import Change, not_allowed, operate, reference, require_status

DEFINITION = parameters.definition("task-complete")


async def _read(svc: Services, ref: str | None):
    if not ref or ref.count("/") != 1:
        return None
    type, id = ref.split("/")
    stored = await svc.store.read(type, id)
    return stored if stored is not None and not stored.deleted else None


async def _signers(change: Change) -> tuple[str, list[str]]:
    """(the author's role, every consultant's role that must sign), checking who may complete."""
    task, id = change.task, change.stored.id
    if consilium.is_consilium(task) and task.get("partOf"):
        raise unprocessable(f"Task/{id} is a seat of a consilium: its protocol is written on the coordinating "
                            f"Task ({reference(task['partOf'][0])})", "Task.partOf")
    if consilium.is_coordinating(task):
        require_status(change, "requested", "in-progress")
        roles = consilium.members(await consilium.seats(change.svc, id), id)
        mine = [r for r in roles if r in change.me.refs]
        if not mine:
            raise not_allowed(f"Only a member of the consilium ({', '.join(roles)}) may complete Task/{id}")
        return mine[0], [mine[0], *(r for r in roles if r != mine[0])]
    require_status(change, "in-progress")
    owner = reference(task.get("owner"))
    if not change.me.is_(task.get("owner")):
        raise not_allowed(f"Only the owner ({owner}) may complete Task/{id}")
    return owner, [owner]


async def decide(change: Change) -> None:
    task, svc, id = change.task, change.svc, change.stored.id
    author, roles = await _signers(change)
    report_ref, protocol_ref = conclusion.output_of(task, "conclusion"), conclusion.output_of(task, "protocol")
    if business_code(task) == "awaiting-signatures" and protocol_ref:
        if await signatures.of(svc, protocol_ref.split("/")[1]):
            raise conflict(f"{protocol_ref} is signed already; a signed protocol is not changed", "Task.output")
    conclusion.check_form(change.params)
    codes = conclusion.diagnoses(change.params)
    author_role = await _read(svc, author)
    organization = caller.organization(orjson.loads(author_role.json)) if author_role else None
    if not organization:
        raise unprocessable(f"{author} belongs to no organisation to keep the protocol", "Task.owner")
    if consilium.is_coordinating(task):
        task.update(status="in-progress", owner={"reference": author})
        task.setdefault("executionPeriod", {"start": instant(change.now)})
    old_report, old_protocol = await _read(svc, report_ref), await _read(svc, protocol_ref)
    number = parameters.one(change.params, "number") or (
        orjson.loads(old_protocol.json)["identifier"]["value"] if old_protocol else f"{change.now:%d.%m.%Y}.{id[:8]}")
    dr = conclusion.report(task, change.params, codes, author, roles, change.now)
    if old_report:
        await change.replace(old_report, dr)
    else:
        report_ref = await change.add(dr)
    doc = conclusion.protocol(id, task, change.params, codes, number, report_ref, roles, organization,
                              consilium.is_consilium(task), change.now)
    if old_protocol:
        await change.replace(old_protocol, doc)
    else:
        protocol_ref = await change.add(doc)
    task.update(businessStatus=business_status("awaiting-signatures"), output=conclusion.outputs(report_ref, protocol_ref))
    change.actor = author


async def handle(request: Request, svc: Services) -> Response:
    access = await for_request(request, svc)
    access.rule("DiagnosticReport", "c")  # the token must allow writing the results too (403 otherwise)
    access.rule("Composition", "c")
    return await operate(request, svc, DEFINITION, decide)
