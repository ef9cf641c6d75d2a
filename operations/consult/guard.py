"""The workflow elements of a ConsultTask change only through the operations.

``refuse_workflow_change`` is called by update and patch planning (``fhir_server.interactions``)
with the stored version and the one about to be written: a PUT or PATCH (also inside a Bundle)
that changes a ConsultTask's status, business status, status reason, owner, due time, paused
clock, outputs or routing inputs (candidates) is refused with 422, naming the element and the
operation to use. Other elements (notes, other inputs...) may still be edited directly. A consultation's protocol
(ConsultProtocol Composition) and conclusion (ConsultConclusion DiagnosticReport) are not
changed by PUT or PATCH at all: their signatures cover them.
"""

from __future__ import annotations

import orjson

from fhir_server.errors import unprocessable
from fhir_server.storage.port import Stored
from operations.consult import conclusion
from operations.consult.codes import REMAINING, is_consult_task
from operations.consult.routing import ROUTING

MANAGED = ("status", "businessStatus", "statusReason", "owner", "restriction", "output")


def _clock(resource: dict) -> list:
    return [e for e in resource.get("extension") or () if isinstance(e, dict) and e.get("url") == REMAINING]


def _routing(resource: dict) -> list:
    """The routing inputs (platform-matching candidates) of a Task."""
    return [i for i in resource.get("input") or () if isinstance(i, dict)
            and any(c.get("system") == ROUTING for c in (i.get("type") or {}).get("coding") or () if isinstance(c, dict))]


def refuse_workflow_change(current: Stored | None, resource: dict) -> None:
    if current is not None and not current.deleted and current.type in ("Composition", "DiagnosticReport"):
        _refuse_result_change(current)
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
    if _routing(before) != _routing(resource):
        changed.append("input")
    if changed:
        raise unprocessable(f"Task/{current.id} is a consultation Task: its {', '.join(changed)} change only through "
                            "the Task operations ($accept, $transfer, $request-info, $provide-info, $refuse, $cancel, "
                            "$route, $claim, $complete)",
                            [f"Task.{k}" for k in changed])


def _refuse_result_change(current: Stored) -> None:
    """A consultation's protocol and conclusion are written by ``$complete`` and signed: never
    changed by PUT or PATCH (before the first signature ``$complete`` replaces them)."""
    before = orjson.loads(current.json)
    if conclusion.is_protocol(before) or conclusion.is_conclusion(before):
        raise unprocessable(f"{current.type}/{current.id} is a consultation's result (signed, or to be signed): it "
                            "changes only through Task/$complete before its first signature", current.type)
