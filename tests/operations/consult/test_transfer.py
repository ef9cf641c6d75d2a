"""Task/$transfer: to another doctor of the same organisation, with a reason; the previous owner keeps access."""

from __future__ import annotations

import pytest

from tests.operations.consult.conftest import problem, ref

pytestmark = pytest.mark.req("SPB-3.3")


@pytest.fixture
async def taken(desk):
    task = await desk.submit()
    assert (await desk.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    return task["id"]


async def test_transfer_to_a_colleague(desk, client, taken):
    r = await desk.op("consultant1", f"Task/{taken}/$transfer", owner=ref("PractitionerRole/consultant2-role"),
                      reason="on leave from tomorrow")
    assert r.status_code == 200, r.text
    task = r.json()
    assert (task["owner"], task["status"]) == (ref("PractitionerRole/consultant2-role"), "in-progress")
    assert "on leave from tomorrow" in task["note"][-1]["text"]
    # the new owner sees it and can work on it; the previous owner still sees it but no longer owns it
    assert (await desk.task(taken, "consultant2")).status_code == 200
    assert (await desk.task(taken, "consultant1")).status_code == 200
    problem(await desk.op("consultant1", f"Task/{taken}/$request-info", comment="ECG?"), 403, "forbidden")
    prov = (await client.get(f"/Provenance?target=Task/{taken}&_sort=-_lastUpdated")).json()["entry"][0]["resource"]
    assert prov["reason"] == [{"text": "on leave from tomorrow"}]
    assert {a["who"]["reference"] for a in prov["agent"]} == {"PractitionerRole/consultant1-role",
                                                               "PractitionerRole/consultant2-role"}


async def test_the_previous_owner_keeps_access_through_provenance(desk, taken):
    # the coordinator transfers twice: consultant1 -> consultant2 -> coordinator; consultant1 is no
    # owner, requester or performer any more, only an agent of a Provenance of the first transfer
    for target in ("consultant2-role", "coordinator-role"):
        r = await desk.op("coordinator", f"Task/{taken}/$transfer", owner=ref(f"PractitionerRole/{target}"),
                          reason="workload")
        assert r.status_code == 200, r.text
    assert (await desk.task(taken, "consultant1")).status_code == 200
    assert (await desk.task(taken, "consultant2")).status_code == 200


async def test_a_reason_is_required(desk, taken):
    r = await desk.op("consultant1", f"Task/{taken}/$transfer", owner=ref("PractitionerRole/consultant2-role"))
    problem(r, 400, "required", "Parameters.parameter.where(name='reason')")


async def test_a_doctor_of_another_organisation_cannot_be_the_target(desk, taken):
    r = await desk.op("consultant1", f"Task/{taken}/$transfer", owner=ref("PractitionerRole/outsider-role"),
                      reason="friend")
    problem(r, 422, "processing", "Parameters.parameter.where(name='owner')")
    assert (await desk.task(taken)).json()["owner"] == ref("PractitionerRole/consultant1-role")


async def test_only_the_owner_or_a_coordinator_may_transfer(desk, taken):
    r = await desk.op("requester", f"Task/{taken}/$transfer", owner=ref("PractitionerRole/consultant2-role"),
                      reason="faster")
    problem(r, 403, "forbidden")


async def test_a_task_not_in_work_cannot_be_transferred(desk):
    task = await desk.submit()
    r = await desk.op("coordinator", f"Task/{task['id']}/$transfer", owner=ref("PractitionerRole/consultant2-role"),
                      reason="workload")
    problem(r, 409, "conflict", "Task.status")
