"""Task/$accept: a practitioner of the organisation the request is offered to takes it."""

from __future__ import annotations

import asyncio

import pytest

from tests.operations.consult.conftest import problem, ref

pytestmark = [pytest.mark.req("SPB-3.3"), pytest.mark.req("CN-3.2")]


async def test_accept_makes_the_caller_s_role_the_owner(desk):
    task = await desk.submit()
    r = await desk.op("consultant1", f"Task/{task['id']}/$accept")
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["owner"]) == ("in-progress", ref("PractitionerRole/consultant1-role"))
    assert done["businessStatus"]["coding"][0]["code"] == "in-work"
    assert "start" in done["executionPeriod"]
    assert done["restriction"] == task["restriction"]  # the due time stays
    assert (await desk.task(task["id"], "consultant1")).status_code == 200


async def test_a_task_cannot_be_accepted_twice(desk):
    task = await desk.submit()
    assert (await desk.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    # the coordinator sees it still; a colleague learns only that it was taken
    problem(await desk.op("coordinator", f"Task/{task['id']}/$accept"), 409, "conflict", "Task.status")
    problem(await desk.op("consultant2", f"Task/{task['id']}/$accept"), 409, "conflict", "Task.owner")
    problem(await desk.op("outsider", f"Task/{task['id']}/$accept"), 404, "not-found")


async def test_two_consultants_accepting_at_the_same_moment_exactly_one_wins(desk):
    task = await desk.submit()
    results = await asyncio.gather(*(desk.op(who, f"Task/{task['id']}/$accept")
                                     for who in ("consultant1", "consultant2", "coordinator")))
    assert sorted(r.status_code for r in results) == [200, 409, 409], [r.text for r in results]
    winner = next(r.json() for r in results if r.status_code == 200)
    current = (await desk.task(task["id"])).json()
    assert current["owner"] == winner["owner"] and current["meta"]["versionId"] == "2"


async def test_the_requester_may_not_accept(desk):
    task = await desk.submit()
    problem(await desk.op("requester", f"Task/{task['id']}/$accept"), 403, "forbidden")


async def test_a_doctor_of_another_organisation_does_not_see_the_task(desk):
    task = await desk.submit()
    problem(await desk.op("outsider", f"Task/{task['id']}/$accept"), 404, "not-found")


async def test_an_unrouted_task_cannot_be_accepted(desk, client):
    task = await desk.submit(org=None)
    problem(await desk.op("requester", f"Task/{task['id']}/$accept"), 409, "conflict", "Task.owner")


async def test_a_task_that_is_not_a_consultation_task_is_refused(desk, client):
    plain = {"resourceType": "Task", "id": "plain", "status": "requested", "intent": "order",
             "owner": ref("PractitionerRole/consultant1-role")}
    assert (await client.put("/Task/plain", json=plain)).status_code == 201
    problem(await desk.op("consultant1", "Task/plain/$accept"), 422, "processing", "Task/plain")


async def test_the_role_parameter_must_be_one_of_the_caller_s_roles_there(desk):
    task = await desk.submit()
    r = await desk.op("consultant1", f"Task/{task['id']}/$accept", role=ref("PractitionerRole/consultant2-role"))
    problem(r, 422, "processing", "Parameters.parameter.where(name='role')")
