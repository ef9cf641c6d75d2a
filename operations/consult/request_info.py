"""Task/{id}/$request-info: the owner asks the requester for more information, with a comment
(SPB-3.3). The Task goes on-hold, business status awaiting-information, and the deadline clock
pauses (RU-20): the time left is kept on the Task. The comment is sent to the requester as a
Communication of the consultation and noted on the Task."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.services import Services
from operations import parameters
from operations.consult import deadline
from operations.consult.codes import business_status
from operations.consult.task import Change, operate, not_allowed, reference, require_status

DEFINITION = parameters.definition("task-request-info")


async def decide(change: Change) -> None:
    require_status(change, "in-progress")
    owner = reference(change.task.get("owner"))
    if not change.me.is_(change.task.get("owner")):
        raise not_allowed(f"Only the owner ({owner}) may ask for information on Task/{change.stored.id}")
    comment = parameters.one(change.params, "comment")
    task = change.task
    task.update(status="on-hold", businessStatus=business_status("awaiting-information"))
    deadline.pause(task, change.now)
    task.setdefault("note", []).append({"authorReference": {"reference": owner}, "time": deadline.instant(change.now),
                                        "text": comment})
    message = {
        "resourceType": "Communication", "status": "completed", "basedOn": task.get("basedOn"),
        "about": [{"reference": f"Task/{change.stored.id}"}], "subject": task.get("for"),
        "sent": deadline.instant(change.now), "sender": {"reference": owner},
        "recipient": [task["requester"]] if task.get("requester") else None,
        "reasonCode": [business_status("awaiting-information")], "payload": [{"contentString": comment}],
    }
    await change.add({k: v for k, v in message.items() if v})
    change.actor = owner


async def handle(request: Request, svc: Services) -> Response:
    return await operate(request, svc, DEFINITION, decide)
