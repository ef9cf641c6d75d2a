"""Task/$journal: the consultation journal (form 003/tm) of an organisation, as a Bundle and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest

from fhir_server.write import new_version
from operations.consult.codes import REFUSAL_REASON, business_status
from operations.consult.deadline import instant, parse_instant
from operations.consult import journal as journal_module
from operations.consult.journal import COLUMNS
from tests.operations.consult.conftest import as_, draft, problem, ref

REASON = {"system": REFUSAL_REASON, "code": "incomplete-documentation"}
TODAY = date.today().isoformat()


async def completed_directly(app, task_id: str, hours: float) -> None:
    """Complete a Task ``hours`` after its receipt. The completed state is written straight to the
    store: completion goes through $complete and every consultant's qualified signature ($sign,
    being built alongside), and the journal and report need only the end state."""
    store = app.state.services.store
    stored = await store.read("Task", task_id)
    task = orjson.loads(stored.json)
    received = parse_instant(task["restriction"]["period"]["start"])
    task.update(status="completed", businessStatus=business_status("completed"),
                lastModified=instant(datetime.now(timezone.utc)))
    task["executionPeriod"] = {**task.get("executionPeriod", {}), "end": instant(received + timedelta(hours=hours))}
    await store.commit([new_version(task, task_id, stored.version + 1, "PUT")])


@pytest.fixture
async def received(desk, client):
    """Organisation B received three consultations today: sr1 concluded, sr-stat refused,
    sr-routine waiting; organisation C received one."""
    tasks = {sr: (await desk.submit(sr))["id"] for sr in ("sr1", "sr-stat", "sr-routine")}
    assert (await client.put("/ServiceRequest/sr-c", json=draft("sr-c", "routine"))).status_code == 201
    agreement = {"resourceType": "OrganizationAffiliation", "id": "orgC-for-orgA", "active": True,
                 "organization": ref("Organization/orgA"), "participatingOrganization": ref("Organization/orgC")}
    assert (await client.put("/OrganizationAffiliation/orgC-for-orgA", json=agreement)).status_code == 201
    tasks["sr-c"] = (await desk.submit("sr-c", "orgC"))["id"]
    assert (await desk.op("consultant1", f"Task/{tasks['sr1']}/$accept")).status_code == 200
    await completed_directly(desk.app, tasks["sr1"], 5)
    r = await desk.op("consultant2", f"Task/{tasks['sr-stat']}/$refuse", reason=REASON, text="No ECG attached")
    assert r.status_code == 200, r.text
    return tasks


def journal(org: str = "orgB", start: str = TODAY, end: str = TODAY, extra: str = "") -> str:
    return f"/Task/$journal?organization=Organization/{org}&start={start}&end={end}{extra}"


def rows(bundle: dict) -> list[dict]:
    out = []
    for e in bundle.get("entry", []):
        row = {}
        for p in e["resource"]["parameter"]:
            row[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
        out.append(row)
    return out


@pytest.mark.req("UA-VI.6")
async def test_the_journal_registers_each_request_and_its_outcome(desk, received):
    r = await desk.client.get(journal(), headers=as_(desk.app, "coordinator"))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    got = {row["task"]["reference"]: row for row in rows(bundle)}
    assert set(got) == {f"Task/{received[sr]}" for sr in ("sr1", "sr-stat", "sr-routine")}  # not orgC's
    concluded, refused, waiting = (got[f"Task/{received[sr]}"] for sr in ("sr1", "sr-stat", "sr-routine"))
    assert concluded["number"] == received["sr1"]
    assert concluded["patient"] == {"reference": "Patient/p1", "display": "Ivanova"}
    assert concluded["requester"] == {"reference": "PractitionerRole/requester-role", "display": "requester"}
    assert concluded["consultant"] == {"reference": "PractitionerRole/consultant1-role", "display": "consultant1"}
    assert concluded["form-of-care"]["code"] == "urgent"
    assert (concluded["result"], concluded["status"]) == ("conclusion", "completed")
    assert parse_instant(concluded["result-date"]) - parse_instant(concluded["received"]) == timedelta(hours=5)
    assert (refused["result"], refused["form-of-care"]["code"]) == ("refusal", "emergency")
    assert refused["refusal-reason"] == {"coding": [REASON], "text": "No ECG attached"}
    assert "result-date" in refused
    assert "result" not in waiting and "consultant" not in waiting
    received_at = [row["received"] for row in rows(bundle)]
    assert received_at == sorted(received_at)


@pytest.mark.req("UA-VI.6")
async def test_the_journal_as_csv(desk, received, monkeypatch):
    monkeypatch.setattr(journal_module, "PAGE", 1)  # streamed a page at a time: here one row per page
    r = await desk.client.get(journal(extra="&_format=text/csv"), headers=as_(desk.app, "coordinator"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8"))))
    assert r.content.endswith(b"\r\n")
    assert tuple(table[0]) == COLUMNS
    by_task = {line[-1]: dict(zip(COLUMNS, line)) for line in table[1:]}
    assert len(by_task) == 3
    refused = by_task[f"Task/{received['sr-stat']}"]
    assert (refused["patient"], refused["form-of-care"], refused["result"]) == ("Ivanova", "Emergency", "refusal")
    assert refused["refusal-reason"].endswith("No ECG attached")
    assert by_task[f"Task/{received['sr1']}"]["consultant"] == "consultant1"


async def test_the_period_selects_by_receipt(desk, client, received):
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    r = await client.get(journal(start=yesterday, end=yesterday))
    assert r.status_code == 200 and "entry" not in r.json()  # a system client may read it too
    assert len(rows((await client.get(journal("orgC", yesterday, TODAY))).json())) == 1


async def test_the_journal_can_be_asked_with_parameters(desk, received):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "organization", "valueReference": ref("Organization/orgB")},
        {"name": "start", "valueDate": TODAY}, {"name": "end", "valueDate": TODAY}]}
    r = await desk.client.post("/Task/$journal", json=body, headers=as_(desk.app, "coordinator"))
    assert r.status_code == 200, r.text
    assert len(rows(r.json())) == 3


@pytest.mark.parametrize("who", ["consultant1", "requester", "outsider"])
async def test_only_coordinators_of_the_organisation_read_it(desk, received, who):
    problem(await desk.client.get(journal(), headers=as_(desk.app, who)), 403, "forbidden")


@pytest.mark.parametrize("query,status,code,expression", [
    ("/Task/$journal?organization=Organization/orgB&end=2026-12-01", 400, "required", "start"),
    ("/Task/$journal?organization=Organization/orgB&start=2026-13-01&end=2026-12-01", 400, "invalid", "start"),
    ("/Task/$journal?organization=Organization/orgB&start=2026-12-02&end=2026-12-01", 400, "invalid", "end"),
    ("/Task/$journal?start=2026-12-01&end=2026-12-01", 400, "required", "organization"),
    ("/Task/$journal?organization=Organization/nope&start=2026-12-01&end=2026-12-01", 404, "not-found",
     "organization"),
    ("/Task/$journal?organization=orgB&start=2026-12-01&end=2026-12-01&page=2", 400, "invalid", "page"),
    ("/Task/$journal?organization=orgB&start=2026-12-01&end=2026-12-01&_format=xml", 406, "not-supported", "_format"),
])
async def test_bad_input_is_named(desk, query, status, code, expression):
    problem(await desk.client.get(query, headers=as_(desk.app, "coordinator")), status, code, expression)
