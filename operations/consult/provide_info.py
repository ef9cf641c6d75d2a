"""Task/{id}/$provide-info: the requester answers an information request with a Communication
(given whole, or as a comment and attachments) (SPB-3.3). The Task goes back in-progress and the
deadline clock resumes (RU-20): the new due time is now plus the time that was left."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import OperationOutcomeError, issue
from fhir_server.services import Services
from operations import parameters
from operations.consult import deadline
from operations.consult.codes import business_status
from operations.consult.task import Change, operate, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-provide-info")


def _answer(change: Change) -> dict:
    """The Communication: the one given (its payload kept) or a new one, with the comment and
    attachments added; the server sets who, when and what it is about."""
    task = change.task
    message = dict(parameters.one(change.params, "communication") or {"resourceType": "Communication"})
    payload = list(message.get("payload") or [])
    comment = parameters.one(change.params, "comment")
    if comment:
        payload.append({"contentString": comment})
    payload += [{"contentAttachment": a} for a in change.params["attachment"]]
    if not payload:
        raise OperationOutcomeError([issue("required", "$provide-info needs a communication with a payload, a "
                                           "comment or an attachment", "Parameters.parameter")])
    message.pop("id", None)
    message.update(status="completed", payload=payload, about=[{"reference": f"Task/{change.stored.id}"}],
                   sent=deadline.instant(change.now), sender={"reference": change.me.user})
    for key, value in (("basedOn", task.get("basedOn")), ("subject", task.get("for")),
                       ("recipient", [task["owner"]] if task.get("owner") else None)):
        if value:
            message[key] = value
    return message


async def decide(change: Change) -> None:
    require_status(change, "on-hold")
    requester = reference(change.task.get("requester"))
    if not change.me.is_(change.task.get("requester")):
        raise not_allowed(f"Only the requester ({requester}) may answer an information request on "
                          f"Task/{change.stored.id}")
    answer = await change.add(_answer(change))
    change.task.update(status="in-progress", businessStatus=business_status("in-work"))
    deadline.resume(change.task, change.now)
    change.task.setdefault("note", []).append({"authorReference": {"reference": change.me.user},
                                               "time": deadline.instant(change.now),
                                               "text": f"Information provided: {answer}"})
    change.actor = requester if requester in change.me.refs else change.me.user


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
