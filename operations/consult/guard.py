"""The workflow elements of a ConsultTask change only through the operations.

``refuse_workflow_change`` is called by update and patch planning (``fhir_server.interactions``)
with the stored version and the one about to be written: a PUT or PATCH (also inside a Bundle)
that changes a ConsultTask's status, business status, status reason, owner, due time or paused
clock is refused with 422, naming the element and the operation to use. Other elements (notes,
inputs...) may still be edited directly.
"""

from __future__ import annotations

import orjson

from fhir_server.errors import unprocessable
from fhir_server.storage.port import Stored
from operations.consult.codes import REMAINING, is_consult_task

MANAGED = ("status", "businessStatus", "statusReason", "owner", "restriction")


def _clock(resource: dict) -> list:
    return [e for e in resource.get("extension") or () if isinstance(e, dict) and e.get("url") == REMAINING]


def refuse_workflow_change(current: Stored | None, resource: dict) -> None:
    if current is None or current.deleted or current.type != "Task":
        return
    before = orjson.loads(current.json)
    if not is_consult_task(before):
        return
    changed = [k for k in MANAGED if before.get(k) != resource.get(k)]
    if not is_consult_task(resource):
        changed.append("meta.profile")
    if _clock(before) != _clock(resource):
        changed.append("extension")
    if changed:
        raise unprocessable(f"Task/{current.id} is a consultation Task: its {', '.join(changed)} change only through "
                            "the Task operations ($accept, $transfer, $request-info, $provide-info, $refuse, $cancel)",
                            [f"Task.{k}" for k in changed])
