"""Organization/{id}/$weekly-report: the weekly telemedicine monitoring of an organisation (KZ-4).

``GET Organization/orgB/$weekly-report?week=2026-W49`` (an ISO week, Monday 00:00 to Monday
00:00 UTC) answers a ``Parameters`` with what the Kuzbass weekly monitoring counts per
organisation:

- ``profiles``: its active HealthcareServices (the profiles it offers), each also listed as ``profile``;
- ``active-schedule``: whether one of its active Schedules (of the organisation's
  PractitionerRoles, their practitioners or its HealthcareServices) has Slots in the week, with
  ``schedules``, ``slots`` and ``free-slots`` counted;
- consultations of the organisation (ConsultTasks owned by it or its roles): ``requested``
  (received in the week), ``held`` (completed in the week), ``refused`` (rejected in the week),
  ``overdue`` (due in the week and flagged overdue by the deadline sweeper);
- ``conclusion-time``: per form of care, the consultations held in the week and the median time
  from receipt to conclusion (a Duration in hours).

A Parameters rather than a MeasureReport: no Measure is published for this monitoring, and the
counts read by name are what the regional report needs. Counts come from the store's search
(``_total``); only the held consultations are read, a page at a time. Registrations in the
national document registry (REMD) are not counted: documents are not exported yet (KZ-4b).
Who may read it: the organisation's coordinators and system clients (403 otherwise).
"""

from __future__ import annotations

import re
import statistics
from datetime import date, datetime, time, timedelta, timezone

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.access import for_request
from fhir_server.errors import invalid
from fhir_server.http import json_response, negotiate, wants_pretty
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from fhir_server.subscriptions.topics import DEADLINE
from operations.consult.codes import CONSULT_TASK, FORM_OF_CARE, code_system, forms_of_care
from operations.consult.deadline import instant, parse_instant
from operations.consult.journal import authorise, organisation, owners, pages

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
UCUM = "http://unitsofmeasure.org"


def week_of(value: str | None) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) UTC of an ISO week ``YYYY-Www``; 400 naming ``week`` otherwise."""
    m = _WEEK.match(value or "")
    try:
        if m is None:
            raise ValueError
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise invalid(f"week must be an ISO week YYYY-Www (e.g. 2026-W49), not '{value or ''}'", "week") from None
    start = datetime.combine(monday, time.min, tzinfo=timezone.utc)
    return start, start + timedelta(days=7)


async def count(svc: Services, type: str, items: list[tuple[str, str]]) -> int:
    page = await svc.store.search(parse_query(type, items, strict=True), count=0, cursor=None, total=True)
    return page.total or 0


async def ids(svc: Services, type: str, items: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    async for page in pages(svc, type, items):
        out += [f"{type}/{s.id}" for s in page]
    return out


async def _schedule(svc: Services, org: str, roles: str, lo: str, hi: str) -> list[dict]:
    actors = roles.split(",")[1:]
    async for page in pages(svc, "PractitionerRole", [("organization", org)]):
        actors += [p for s in page if (p := (orjson.loads(s.json).get("practitioner") or {}).get("reference"))]
    actors += await ids(svc, "HealthcareService", [("organization", org)])
    actor = ",".join(sorted(set(actors)))
    schedules = await ids(svc, "Schedule", [("actor", actor), ("active", "true")]) if actors else []
    if not schedules:
        return [_int("schedules", 0), _int("slots", 0), _int("free-slots", 0), {"name": "active-schedule",
                                                                                 "valueBoolean": False}]
    week = [("schedule", ",".join(schedules)), ("start", f"ge{lo}"), ("start", f"lt{hi}")]
    slots = await count(svc, "Slot", week)
    free = await count(svc, "Slot", week + [("status", "free")])
    return [{"name": "active-schedule", "valueBoolean": slots > 0}, _int("schedules", len(schedules)),
            _int("slots", slots), _int("free-slots", free)]


def _int(name: str, value: int) -> dict:
    return {"name": name, "valueInteger": value}


async def _conclusion_times(svc: Services, tasks: list[tuple[str, str]]) -> tuple[int, list[dict]]:
    """How many were held, and per form of care the median time from receipt to conclusion."""
    hours: dict[str, list[float]] = {}
    held = 0
    async for page in pages(svc, "Task", tasks):
        for s in page:
            held += 1
            task = orjson.loads(s.json)
            received = ((task.get("restriction") or {}).get("period") or {}).get("start") or task.get("authoredOn")
            done = (task.get("executionPeriod") or {}).get("end") or task.get("lastModified")
            form = forms_of_care().get(task.get("priority"), (None,))[0]
            if received and done and form:
                spent = parse_instant(done) - parse_instant(received)
                hours.setdefault(form, []).append(spent.total_seconds() / 3600)
    out = []
    for concept in code_system("form-of-care")["concept"]:
        values = hours.get(concept["code"])
        if values:
            median = round(statistics.median(values), 2)
            out.append({"name": "conclusion-time", "part": [
                {"name": "form-of-care", "valueCoding": {"system": FORM_OF_CARE, "code": concept["code"],
                                                         "display": concept["display"]}},
                _int("held", len(values)),
                {"name": "median", "valueDuration": {"value": median, "unit": "h", "system": UCUM, "code": "h"}}]})
    return held, out


async def handle(request: Request, svc: Services) -> Response:
    for name in request.query_params:
        if name not in ("week", "_format", "_pretty"):
            raise invalid(f"$weekly-report has no parameter '{name}' (it takes: week)", name)
    start, end = week_of(request.query_params.get("week"))
    access = await for_request(request, svc)
    org = await organisation(svc, request.path_params["id"], "Organization.id")
    await authorise(svc, access, org)
    lo, hi = instant(start), instant(end)
    roles = await owners(svc, org)
    mine = [("_profile", CONSULT_TASK), ("owner", roles)]
    services = [(s.id, orjson.loads(s.json)) async for page in pages(
        svc, "HealthcareService", [("organization", org), ("active", "true")]) for s in page]
    held, times = await _conclusion_times(svc, mine + [("status", "completed"), ("modified", f"ge{lo}"),
                                                        ("modified", f"lt{hi}")])
    out = [{"name": "organization", "valueReference": {"reference": org}},
           {"name": "week", "valueString": request.query_params["week"]},
           {"name": "period", "valuePeriod": {"start": lo, "end": hi}},
           _int("profiles", len(services)),
           *({"name": "profile", "valueReference": {"reference": f"HealthcareService/{id}",
                                                    **({"display": s["name"]} if s.get("name") else {})}}
             for id, s in services),
           *await _schedule(svc, org, roles, lo, hi),
           _int("requested", await count(svc, "Task", mine + [("received", f"ge{lo}"), ("received", f"lt{hi}")])),
           _int("held", held),
           _int("refused", await count(svc, "Task", mine + [("status", "rejected"), ("modified", f"ge{lo}"),
                                                            ("modified", f"lt{hi}")])),
           _int("overdue", await count(svc, "Task", mine + [("_tag", f"{DEADLINE}|overdue"), ("due", f"ge{lo}"),
                                                            ("due", f"lt{hi}")])),
           *times]
    svc.auditor.record(request, "operation", [], query=f"Organization/{org.split('/')[1]}/$weekly-report?week="
                                                        f"{request.query_params['week']}")
    return json_response({"resourceType": "Parameters", "parameter": out}, 200, None, negotiate(request),
                         wants_pretty(request))
