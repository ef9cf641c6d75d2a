"""Task/$journal: the consultation journal of an organisation, form 003/tm (UA-VI.6).

``GET Task/$journal?organization=Organization/x&start=2026-12-01&end=2026-12-31`` (or ``POST``
with a Parameters body) lists every consultation the organisation received in the period (both
days included, UTC): the ConsultTasks owned by it or by one of its PractitionerRoles whose receipt
(``restriction.period.start``, SearchParameter ``received``) falls in the period, oldest first.
A row: registration number (the Task's id: stable, unique, and the way back to the record),
date received, patient, requester, consultant (the owner once taken), form of care, status, and
the result: a conclusion (``completed``) or a refusal (``rejected``, with its reason) or a
cancellation, with its date.

The answer is a Bundle of type ``collection`` with one ``Parameters`` per row (the row's fields
as named parameters, so a client reads them by name), or CSV with a header row (UTF-8, RFC 4180)
for ``_format=text/csv``. Both are streamed page by page from the store's search: a long period
never sits in memory. Who may read it: the organisation's coordinators (a role coded
``coordinator``) and system clients; everyone else 403.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta, timezone
from typing import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fhir_server.auth.access import Access, for_request
from fhir_server.errors import OperationOutcomeError, forbidden, invalid, issue, not_found, too_costly
from fhir_server.http import FHIR_JSON, base_url
from fhir_server.search.plan import parse_query
from fhir_server.services import Services
from fhir_server.subscriptions.email import display_name
from operations import parameters
from operations.consult import caller
from operations.consult.codes import CONSULT_TASK, FORM_OF_CARE, code_system, forms_of_care
from operations.consult.deadline import instant

DEFINITION = parameters.definition("task-journal")
PAGE = 200
CSV = "text/csv"
COLUMNS = ("number", "received", "patient", "patient-reference", "requester", "consultant", "form-of-care", "status",
           "result", "result-date", "refusal-reason", "task")
RESULTS = {"completed": "conclusion", "rejected": "refusal", "cancelled": "cancelled"}


async def authorise(svc: Services, access: Access, org: str) -> None:
    """A system client, or a coordinator of ``org``; 403 otherwise."""
    if access.rule("Task", "s").system:
        return
    me = await caller.of(svc, access)
    if not me.coordinates(org):
        raise forbidden(f"Only a coordinator of {org} (or a system client) may read its journal and reports",
                        "fhirUser")


async def organisation(svc: Services, value: str | None, where: str) -> str:
    """``Organization/x`` (or ``x``) of a known Organization."""
    if not value:
        raise OperationOutcomeError([issue("required", f"The parameter '{where}' is required", where)])
    id = value.split("/", 1)[1] if value.startswith("Organization/") else value
    stored = await svc.store.read("Organization", id) if "/" not in id else None
    if stored is None or stored.deleted:
        raise not_found(f"Organization '{value}' is not known", where)
    return f"Organization/{id}"


async def pages(svc: Services, type: str, items: list[tuple[str, str]]) -> AsyncIterator[list]:
    """Every match of a search, a page at a time."""
    query, cursor = parse_query(type, items, strict=True), None
    while True:
        page = await svc.store.search(query, count=PAGE, cursor=cursor, total=False)
        yield page.entries
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def owners(svc: Services, org: str) -> str:
    """The organisation and its PractitionerRoles, as one ``owner=`` value."""
    refs = [org]
    async for page in pages(svc, "PractitionerRole", [("organization", org)]):
        refs += [f"PractitionerRole/{s.id}" for s in page]
        if len(refs) > svc.settings.max_chain_ids:
            raise too_costly(f"{org} has more than {svc.settings.max_chain_ids} PractitionerRoles", "organization")
    return ",".join(refs)


def day_range(start: date, end: date) -> tuple[str, str]:
    """[start 00:00, the day after end 00:00) in UTC, as search values."""
    lo = datetime.combine(start, time.min, tzinfo=timezone.utc)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
    return instant(lo), instant(hi)


def _date(value: str | None, name: str) -> date:
    if not value:
        raise OperationOutcomeError([issue("required", f"The parameter '{name}' is required", name)])
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(f"{name} must be a date (YYYY-MM-DD), not '{value}'", name) from None


async def _inputs(request: Request, svc: Services) -> dict[str, str | None]:
    if request.method == "POST":
        got = await parameters.read(request, DEFINITION, svc.settings.max_body_bytes, svc.settings.max_depth)
        org = parameters.one(got, "organization")
        return {"organization": org.get("reference") if isinstance(org, dict) else None,
                "start": parameters.one(got, "start"), "end": parameters.one(got, "end")}
    names = {p["name"] for p in DEFINITION["parameter"] if p["use"] == "in"}
    for name in request.query_params:
        if name not in names and name not in ("_format", "_pretty"):
            raise invalid(f"$journal has no parameter '{name}' (it takes: {', '.join(sorted(names))})", name)
    return {n: request.query_params.get(n) for n in names}


class _Names:
    """Display names of the people and organisations in the rows, read once each."""

    def __init__(self, svc: Services):
        self.svc = svc
        self.known: dict[str, str] = {}

    async def of(self, ref: str | None) -> str:
        if not ref or ref.count("/") != 1:
            return ""
        if ref not in self.known:
            if len(self.known) > 10_000:
                self.known.clear()
            type, id = ref.split("/")
            stored = await self.svc.store.read(type, id)
            resource = orjson.loads(stored.json) if stored is not None and not stored.deleted else {}
            if type == "PractitionerRole":
                name = await self.of((resource.get("practitioner") or {}).get("reference"))
            else:
                name = resource.get("name") if isinstance(resource.get("name"), str) else display_name(resource)
            self.known[ref] = name or ""
        return self.known[ref]


def _ref(value) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


async def row(task_id: str, task: dict, names: _Names) -> dict:
    """One journal row: the Task's registration, parties, form of care and result."""
    status = task.get("status")
    form = forms_of_care().get(task.get("priority"), (None, None))[0]
    display = next((c["display"] for c in code_system("form-of-care")["concept"] if c["code"] == form), None)
    owner = _ref(task.get("owner"))
    result = RESULTS.get(status)
    ended = (task.get("executionPeriod") or {}).get("end") if status == "completed" else None
    done = ended or task.get("lastModified")
    reason = task.get("statusReason") if status == "rejected" else None
    return {
        "number": task_id,
        "received": ((task.get("restriction") or {}).get("period") or {}).get("start") or task.get("authoredOn"),
        "patient": {"reference": _ref(task.get("for")), "display": await names.of(_ref(task.get("for")))},
        "requester": {"reference": _ref(task.get("requester")), "display": await names.of(_ref(task.get("requester")))},
        "consultant": ({"reference": owner, "display": await names.of(owner)}
                       if owner and not owner.startswith("Organization/") else None),
        "form-of-care": {"system": FORM_OF_CARE, "code": form, "display": display} if form else None,
        "status": status, "result": result, "result-date": done if result else None, "refusal-reason": reason,
        "task": {"reference": f"Task/{task_id}"},
    }


_TYPES = {"number": "valueString", "received": "valueDateTime", "patient": "valueReference",
          "requester": "valueReference", "consultant": "valueReference", "form-of-care": "valueCoding",
          "status": "valueCode", "result": "valueCode", "result-date": "valueDateTime",
          "refusal-reason": "valueCodeableConcept", "task": "valueReference"}


def as_parameters(r: dict) -> dict:
    out = []
    for name, key in _TYPES.items():
        value = r.get(name)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v}
        if value:
            out.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": out}


def as_csv(r: dict) -> list[str]:
    reason = r.get("refusal-reason") or {}
    codes = [c.get("display") or c.get("code") or "" for c in reason.get("coding") or ()]
    return [r["number"], r.get("received") or "", r["patient"]["display"], r["patient"]["reference"] or "",
            r["requester"]["display"] or r["requester"]["reference"] or "",
            (r.get("consultant") or {}).get("display") or (r.get("consultant") or {}).get("reference") or "",
            (r.get("form-of-care") or {}).get("display") or "", r.get("status") or "", r.get("result") or "",
            r.get("result-date") or "", "; ".join([*codes, *([reason["text"]] if reason.get("text") else [])]),
            r["task"]["reference"]]


def _line(values) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


async def handle(request: Request, svc: Services) -> Response:
    fmt = (request.query_params.get("_format") or "").split(";")[0].strip().lower()
    if fmt not in ("", "json", "application/json", "application/fhir+json", CSV):
        raise OperationOutcomeError([issue("not-supported", f"_format={fmt} is not supported: use {CSV} or JSON",
                                           "_format")], status=406)
    inputs = await _inputs(request, svc)
    access = await for_request(request, svc)
    org = await organisation(svc, inputs["organization"], "organization")
    start, end = _date(inputs["start"], "start"), _date(inputs["end"], "end")
    if end < start:
        raise invalid(f"end ({end}) is before start ({start})", "end")
    await authorise(svc, access, org)
    lo, hi = day_range(start, end)
    items = [("_profile", CONSULT_TASK), ("owner", await owners(svc, org)), ("received", f"ge{lo}"),
             ("received", f"lt{hi}"), ("_sort", "received")]
    names = _Names(svc)
    where = f"Task/$journal?organization={org}&start={start}&end={end}"

    async def rows() -> AsyncIterator[dict]:
        async for page in pages(svc, "Task", items):
            svc.auditor.record(request, "operation", page, query=where)
            for s in page:
                yield await row(s.id, orjson.loads(s.json), names)

    if fmt == CSV:
        async def body_csv() -> AsyncIterator[bytes]:
            yield _line(COLUMNS)
            async for r in rows():
                yield _line(as_csv(r))

        name = f"journal-{org.split('/')[1]}-{start}-{end}.csv"
        return StreamingResponse(body_csv(), media_type=f"{CSV}; charset=utf-8; header=present",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def body_json() -> AsyncIterator[bytes]:
        head = {"resourceType": "Bundle", "type": "collection", "timestamp": instant(datetime.now(timezone.utc)),
                "link": [{"relation": "self", "url": f"{base_url(request, svc.settings.base_url)}/{where}"}]}
        yield orjson.dumps(head)[:-1]
        first = True
        async for r in rows():
            yield (b',"entry":[' if first else b",") + orjson.dumps({"resource": as_parameters(r)})
            first = False
        yield b"}" if first else b"]}"

    return StreamingResponse(body_json(), media_type=f"{FHIR_JSON}; charset=utf-8")
