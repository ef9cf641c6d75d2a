"""Task/$refuse (reason code and text) and Task/$cancel (requester only)."""

from __future__ import annotations

import pytest

from operations.consult.codes import REFUSAL_REASON
from tests.operations.consult.conftest import problem

REASON = {"system": REFUSAL_REASON, "code": "incomplete-documentation"}


@pytest.mark.req("CN-3.2")
@pytest.mark.req("SPB-3.3")
async def test_refusal_carries_the_reason(desk):
    task = await desk.submit()
    r = await desk.op("consultant2", f"Task/{task['id']}/$refuse", reason=REASON, text="No ECG attached")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "rejected" and done["businessStatus"]["coding"][0]["code"] == "refused"
    assert done["statusReason"] == {"coding": [REASON], "text": "No ECG attached"}
    # the requester sees the refusal and its reason
    seen = (await desk.task(task["id"], "requester")).json()
    assert seen["statusReason"]["text"] == "No ECG attached"


@pytest.mark.req("CN-3.2")
@pytest.mark.parametrize("values,expression", [
    ({"text": "No ECG"}, "Parameters.parameter.where(name='reason')"),
    ({"reason": REASON}, "Parameters.parameter.where(name='text')"),
])
async def test_refusal_needs_a_reason_code_and_text(desk, values, expression):
    task = await desk.submit()
    problem(await desk.op("consultant1", f"Task/{task['id']}/$refuse", **values), 400, "required", expression)


async def test_refusal_reason_must_be_a_known_code(desk):
    task = await desk.submit()
    r = await desk.op("consultant1", f"Task/{task['id']}/$refuse", reason={"system": REFUSAL_REASON, "code": "bored"},
                      text="x")
    problem(r, 400, "invalid", "Parameters.parameter.where(name='reason')")


async def test_only_the_organisation_refuses_and_only_once(desk):
    task = await desk.submit()
    problem(await desk.op("requester", f"Task/{task['id']}/$refuse", reason=REASON, text="x"), 403, "forbidden")
    assert (await desk.op("consultant1", f"Task/{task['id']}/$refuse", reason=REASON, text="x")).status_code == 200
    problem(await desk.op("coordinator", f"Task/{task['id']}/$refuse", reason=REASON, text="x"), 409, "conflict")


@pytest.mark.req("SPB-3.3")
async def test_the_requester_cancels(desk, client):
    task = await desk.submit()
    assert (await desk.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    r = await desk.op("requester", f"Task/{task['id']}/$cancel", reason="patient transferred")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["statusReason"]) == ("cancelled", {"text": "patient transferred"})
    assert (await client.get("/ServiceRequest/sr1")).json()["status"] == "revoked"
    problem(await desk.op("requester", f"Task/{task['id']}/$cancel"), 409, "conflict", "Task.status")


async def test_only_the_requester_cancels(desk, client):
    task = await desk.submit()
    for who in ("consultant1", "coordinator"):
        problem(await desk.op(who, f"Task/{task['id']}/$cancel"), 403, "forbidden")
    assert (await desk.task(task["id"])).json()["status"] == "requested"
    assert (await client.get("/ServiceRequest/sr1")).json()["status"] == "active"
