"""Organization/$weekly-report: the weekly monitoring of an organisation (KZ-4)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from operations.consult import overdue
from operations.consult.codes import REFUSAL_REASON
from operations.consult.deadline import parse_instant
from tests.operations.consult.conftest import as_, problem, ref
from tests.operations.consult.test_journal import completed_directly

year, number, _ = date.today().isocalendar()
WEEK = f"{year}-W{number:02d}"
MONDAY = datetime.combine(date.fromisocalendar(year, number, 1), datetime.min.time(), tzinfo=timezone.utc)


def slot(id: str, start: datetime, status: str) -> dict:
    return {"resourceType": "Slot", "id": id, "schedule": ref("Schedule/s1"), "status": status,
            "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}


@pytest.fixture
async def week(desk, client):
    """Organisation B this week: two active profiles (and a closed one), a schedule with two slots
    this week and one next week; three consultations received: one held 5 hours after receipt,
    one refused, one overdue."""
    setup = [{"resourceType": "HealthcareService", "id": "cardio", "active": True, "name": "Cardiology",
              "providedBy": ref("Organization/orgB")},
             {"resourceType": "HealthcareService", "id": "neuro", "active": True, "name": "Neurology",
              "providedBy": ref("Organization/orgB")},
             {"resourceType": "HealthcareService", "id": "old", "active": False, "name": "Closed",
              "providedBy": ref("Organization/orgB")},
             {"resourceType": "Schedule", "id": "s1", "active": True,
              "actor": [ref("PractitionerRole/consultant1-role")]},
             slot("a", MONDAY + timedelta(days=2, hours=9), "busy"),
             slot("b", MONDAY + timedelta(days=3, hours=9), "free"),
             slot("c", MONDAY + timedelta(days=8, hours=9), "free")]
    for r in setup:
        assert (await client.put(f"/{r['resourceType']}/{r['id']}", json=r)).status_code == 201, r
    tasks = {sr: (await desk.submit(sr))["id"] for sr in ("sr1", "sr-stat", "sr-routine")}
    assert (await desk.op("consultant1", f"Task/{tasks['sr1']}/$accept")).status_code == 200
    await completed_directly(desk.app, tasks["sr1"], 5)
    r = await desk.op("consultant2", f"Task/{tasks['sr-stat']}/$refuse",
                      reason={"system": REFUSAL_REASON, "code": "incomplete-documentation"}, text="No ECG")
    assert r.status_code == 200, r.text
    routine = (await desk.task(tasks["sr-routine"])).json()
    # the deadline sweeper runs past the planned request's due time (the end of today): only it is open
    flagged = await overdue.sweep(desk.app.state.services,
                                  parse_instant(routine["restriction"]["period"]["end"]) + timedelta(seconds=1))
    assert flagged == 1
    return tasks


def values(report: dict) -> dict:
    out: dict = {}
    for p in report["parameter"]:
        value = p.get("part") or next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 and k not in ("profile", "conclusion-time") else v for k, v in out.items()}


@pytest.mark.req("KZ-4")
async def test_the_weekly_report_counts_profiles_schedule_and_consultations(desk, week):
    r = await desk.client.get(f"/Organization/orgB/$weekly-report?week={WEEK}", headers=as_(desk.app, "coordinator"))
    assert r.status_code == 200, r.text
    got = values(r.json())
    assert got["organization"] == ref("Organization/orgB") and got["week"] == WEEK
    assert got["profiles"] == 2
    assert sorted(p["display"] for p in got["profile"]) == ["Cardiology", "Neurology"]
    assert (got["active-schedule"], got["schedules"], got["slots"], got["free-slots"]) == (True, 1, 2, 1)
    assert (got["requested"], got["held"], got["refused"], got["overdue"]) == (3, 1, 1, 1)
    [urgent] = got["conclusion-time"]
    parts = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in urgent}
    assert parts["form-of-care"]["code"] == "urgent" and parts["held"] == 1
    assert parts["median"] == {"value": 5.0, "unit": "h", "system": "http://unitsofmeasure.org", "code": "h"}


@pytest.mark.req("KZ-4")
async def test_another_week_and_another_organisation_are_empty(desk, client, week):
    year, number, _ = (date.today() - timedelta(days=14)).isocalendar()
    got = values((await client.get(f"/Organization/orgB/$weekly-report?week={year}-W{number:02d}")).json())
    assert (got["requested"], got["held"], got["refused"], got["overdue"], got["slots"]) == (0, 0, 0, 0, 0)
    assert got["active-schedule"] is False and "conclusion-time" not in got
    got = values((await client.get(f"/Organization/orgC/$weekly-report?week={WEEK}")).json())
    assert (got["profiles"], got["requested"], got["schedules"]) == (0, 0, 0)


@pytest.mark.parametrize("value", ["2026-49", "2026-W54", "2025-W53", "2026-W00", "2026-w49", ""])
async def test_a_malformed_week_is_400_naming_it(desk, value):
    r = await desk.client.get(f"/Organization/orgB/$weekly-report?week={value}", headers=as_(desk.app, "coordinator"))
    problem(r, 400, "invalid", "week")


async def test_only_coordinators_and_system_clients_read_it(desk, client):
    for who in ("consultant1", "requester", "outsider"):
        r = await desk.client.get(f"/Organization/orgB/$weekly-report?week={WEEK}", headers=as_(desk.app, who))
        problem(r, 403, "forbidden")
    problem(await client.get(f"/Organization/nope/$weekly-report?week={WEEK}"), 404, "not-found")
    assert (await client.get(f"/Organization/orgB/$weekly-report?week={WEEK}")).status_code == 200
