"""Due times of consultations (RU-19, RU-20, UA-VI.12).

The due time is ``Task.restriction.period.end``; ``period.start`` is the receipt. It follows from
the form of care, read from the request's priority (RU-14): emergency (``stat``) 2 hours after
receipt, urgent 24 hours, planned the end of the day of receipt (in UTC; a per-organisation
policy and time zone come later). While the consultant waits for information the clock is
paused: ``period.end`` is removed and the time that was left is kept in the extension
``REMAINING``; resuming sets ``period.end`` to the resume time plus that time.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone

from fhir_server.errors import unprocessable
from operations.consult.codes import REMAINING, forms_of_care

_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")
UCUM = "http://unitsofmeasure.org"


def instant(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def form_of_care(priority: str | None) -> tuple[str, str]:
    """The form of care and its deadline rule for a request priority; 422 when it has none."""
    forms = forms_of_care()
    if priority not in forms:
        names = ", ".join(f"{p} ({f})" for p, (f, _) in forms.items())
        raise unprocessable(f"The request's priority must name its form of care (RU-14): one of {names}; "
                            f"it is {priority or 'missing'}", "ServiceRequest.priority")
    return forms[priority]


def due(priority: str | None, received: datetime) -> datetime:
    """When the conclusion of a request of ``priority`` received at ``received`` is due."""
    _, rule = form_of_care(priority)
    if rule == "end-of-day":
        day = received.astimezone(timezone.utc).date()
        return datetime.combine(day, time.max, tzinfo=timezone.utc)
    m = _DURATION.match(rule)
    return received + timedelta(hours=int(m.group(1) or 0), minutes=int(m.group(2) or 0))


def start(task: dict, received: datetime) -> None:
    """Set the Task's receipt and due time (in place)."""
    task["restriction"] = {"period": {"start": instant(received), "end": instant(due(task.get("priority"), received))}}


def pause(task: dict, now: datetime) -> None:
    """Stop the clock: keep the time left (none when already overdue) and drop the due time."""
    period = (task.get("restriction") or {}).get("period") or {}
    if "end" not in period:
        return
    left = max(parse_instant(period.pop("end")) - now, timedelta(0))
    task["extension"] = [e for e in task.get("extension") or () if e.get("url") != REMAINING] + [
        {"url": REMAINING, "valueDuration": {"value": round(left.total_seconds(), 3), "unit": "s", "system": UCUM,
                                             "code": "s"}}]


def resume(task: dict, now: datetime) -> None:
    """Restart the clock: the new due time is ``now`` plus the time that was left."""
    kept = [e for e in task.get("extension") or () if e.get("url") == REMAINING]
    if not kept:
        return
    left = timedelta(seconds=kept[0]["valueDuration"]["value"])
    rest = [e for e in task["extension"] if e.get("url") != REMAINING]
    if rest:
        task["extension"] = rest
    else:
        del task["extension"]
    task.setdefault("restriction", {}).setdefault("period", {})["end"] = instant(now + left)
