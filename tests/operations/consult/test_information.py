"""Task/$request-info and $provide-info: the deadline clock pauses while the consultant waits."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from operations.consult.codes import REMAINING
from tests.operations.consult.conftest import as_, problem, ref

pytestmark = pytest.mark.req("SPB-3.3")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def remaining(task: dict) -> float:
    return next(e["valueDuration"]["value"] for e in task["extension"] if e["url"] == REMAINING)


@pytest.fixture
async def taken(desk):
    task = await desk.submit()
    r = await desk.op("consultant1", f"Task/{task['id']}/$accept")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.req("RU-20")
@pytest.mark.req("RU-19")
async def test_submit_accept_request_info_provide_info_moves_the_due_time_by_the_pause(desk, client, taken):
    id, due = taken["id"], at(taken["restriction"]["period"]["end"])
    r = await desk.op("consultant1", f"Task/{id}/$request-info", comment="Please attach the latest ECG")
    assert r.status_code == 200, r.text
    paused = r.json()
    assert (paused["status"], paused["businessStatus"]["coding"][0]["code"]) == ("on-hold", "awaiting-information")
    assert "end" not in paused["restriction"]["period"]  # no due time while paused
    paused_at = at(paused["meta"]["lastUpdated"])
    assert abs(remaining(paused) - (due - paused_at).total_seconds()) < 0.01
    # the requester sees the question as a message of the consultation
    msgs = (await client.get("/Communication?based-on=ServiceRequest/sr1&sender=PractitionerRole/consultant1-role",
                             headers=as_(desk.app, "requester"))).json()["entry"]
    # (besides the chat's record of the $accept event, from the same sender)
    assert [{"contentString": "Please attach the latest ECG"}] in [m["resource"]["payload"] for m in msgs]

    await asyncio.sleep(0.3)
    r = await desk.op("requester", f"Task/{id}/$provide-info", comment="ECG attached",
                      attachment={"contentType": "application/pdf", "url": "Binary/ecg", "title": "ECG"})
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert (resumed["status"], resumed["businessStatus"]["coding"][0]["code"]) == ("in-progress", "in-work")
    assert not any(e["url"] == REMAINING for e in resumed.get("extension", []))
    resumed_at, new_due = at(resumed["meta"]["lastUpdated"]), at(resumed["restriction"]["period"]["end"])
    assert abs((new_due - resumed_at).total_seconds() - remaining(paused)) < 0.01
    moved = new_due - due
    assert abs(moved - (resumed_at - paused_at)) < timedelta(milliseconds=10) and moved >= timedelta(seconds=0.3)
    answer = [e["resource"] for e in (await client.get("/Communication?based-on=ServiceRequest/sr1")).json()["entry"]
              if e["resource"]["sender"] == ref("Practitioner/requester")][0]
    assert answer["payload"][1]["contentAttachment"]["title"] == "ECG"
    assert answer["recipient"] == [ref("PractitionerRole/consultant1-role")]


async def test_the_answer_can_be_a_communication(desk, client, taken):
    id = taken["id"]
    assert (await desk.op("consultant1", f"Task/{id}/$request-info", comment="Lab results?")).status_code == 200
    message = {"resourceType": "Communication", "status": "preparation",
               "payload": [{"contentString": "Troponin 0.02 ng/mL"}]}
    r = await desk.op("requester", f"Task/{id}/$provide-info", communication=message)
    assert r.status_code == 200, r.text
    query = "/Communication?based-on=ServiceRequest/sr1&sender=Practitioner/requester"
    found = (await client.get(query)).json()["entry"]
    assert found[0]["resource"]["status"] == "completed"
    assert found[0]["resource"]["basedOn"] == [ref("ServiceRequest/sr1")]


async def test_request_info_needs_a_comment(desk, taken):
    r = await desk.op("consultant1", f"Task/{taken['id']}/$request-info")
    problem(r, 400, "required", "Parameters.parameter.where(name='comment')")


async def test_provide_info_needs_something_to_provide(desk, taken):
    assert (await desk.op("consultant1", f"Task/{taken['id']}/$request-info", comment="?")).status_code == 200
    problem(await desk.op("requester", f"Task/{taken['id']}/$provide-info"), 400, "required")


async def test_only_the_owner_asks_and_only_the_requester_answers(desk, taken):
    id = taken["id"]
    problem(await desk.op("requester", f"Task/{id}/$request-info", comment="?"), 403, "forbidden")
    problem(await desk.op("coordinator", f"Task/{id}/$request-info", comment="?"), 403, "forbidden")
    assert (await desk.op("consultant1", f"Task/{id}/$request-info", comment="?")).status_code == 200
    problem(await desk.op("consultant1", f"Task/{id}/$provide-info", comment="!"), 403, "forbidden")


async def test_information_is_asked_only_in_work_and_answered_only_when_asked(desk, taken):
    id = taken["id"]
    problem(await desk.op("requester", f"Task/{id}/$provide-info", comment="!"), 409, "conflict", "Task.status")
    assert (await desk.op("consultant1", f"Task/{id}/$request-info", comment="?")).status_code == 200
    problem(await desk.op("consultant1", f"Task/{id}/$request-info", comment="?"), 409, "conflict", "Task.status")
    fresh = await desk.submit("sr-stat")
    problem(await desk.op("coordinator", f"Task/{fresh['id']}/$request-info", comment="?"), 409, "conflict",
            "Task.status")
