"""Task/$claim: a consultant of a candidate organisation takes a platform-matched consultation
(CN-1); of two candidates claiming at the same moment exactly one wins. Both stores, over HTTP
with each practitioner's own token (the platform of test_route)."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.subscriptions.email import concerned
from fhir_server.subscriptions.topics import fired
from tests.operations.consult.conftest import problem, ref
from tests.operations.consult.test_route import business, candidates, hub, put, role  # noqa: F401 - hub: fixture

pytestmark = pytest.mark.req("CN-1")


async def test_a_candidate_s_consultant_claims_the_offered_task(hub):
    task = await hub.submit("sr-cardio", None)
    r = await hub.op("dcardio", f"Task/{task['id']}/$claim")
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], business(done), done["owner"]) == ("in-progress", "in-work",
                                                                ref("PractitionerRole/dcardio-role"))
    assert "start" in done["executionPeriod"] and done["restriction"] == task["restriction"]
    assert candidates(done) == candidates(task)  # the record of the matching stays
    # the other candidate's practitioners no longer see it; the requester and the claimer do
    problem(await hub.task(task["id"], "consultant1"), 404, "not-found")
    problem(await hub.op("consultant1", f"Task/{task['id']}/$claim"), 409, "conflict", "Task.status")
    assert (await hub.task(task["id"], "requester")).status_code == 200
    assert (await hub.task(task["id"], "dcardio")).json()["meta"]["versionId"] == "2"


@pytest.mark.req("CN-3.2")
async def test_two_candidates_claiming_at_the_same_moment_exactly_one_wins(hub):
    task = await hub.submit("sr-cardio", None)
    assert set(candidates(task)) == {"Organization/orgB", "Organization/orgD"}
    results = await asyncio.gather(hub.op("consultant1", f"Task/{task['id']}/$claim"),
                                   hub.op("dcardio", f"Task/{task['id']}/$claim"))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    problem(loser, 409, "conflict", "Task.status")
    winner = next(r.json() for r in results if r.status_code == 200)
    current = (await hub.task(task["id"])).json()
    assert (current["owner"], current["meta"]["versionId"]) == (winner["owner"], "2")


async def test_only_a_candidate_claims_and_only_an_offered_task(hub):
    task = await hub.submit("sr-cardio", None)
    problem(await hub.op("outsider", f"Task/{task['id']}/$claim"), 404, "not-found")  # sees nothing
    problem(await hub.op("requester", f"Task/{task['id']}/$claim"), 403, "forbidden")
    invited = await hub.submit("sr-cardio2", "orgB")  # a direct invitation is accepted, not claimed
    problem(await hub.op("consultant1", f"Task/{invited['id']}/$claim"), 409, "conflict", "Task.owner")
    assert (await hub.op("consultant1", f"Task/{task['id']}/$claim")).status_code == 200
    # a colleague learns only that it was taken
    problem(await hub.op("consultant2", f"Task/{task['id']}/$claim"), 409, "conflict", "Task.owner")


async def test_a_caller_with_roles_in_two_candidates_names_one(hub, client):
    second = role("dcardio", "orgB", {"system": "http://snomed.info/sct", "code": "394579002"}) | {"id": "dcardio-b"}
    await put(client, second)
    task = await hub.submit("sr-cardio", None)
    where = "Parameters.parameter.where(name='role')"
    problem(await hub.op("dcardio", f"Task/{task['id']}/$claim"), 422, "processing", where)
    r = await hub.op("dcardio", f"Task/{task['id']}/$claim", role=ref("PractitionerRole/consultant2-role"))
    problem(r, 422, "processing", where)
    r = await hub.op("dcardio", f"Task/{task['id']}/$claim", role=ref("PractitionerRole/dcardio-b"))
    assert (r.status_code, r.json()["owner"]) == (200, ref("PractitionerRole/dcardio-b")), r.text


@pytest.mark.req("SPB-4.2")
async def test_candidates_are_notified_of_the_offer_and_the_claimer_of_the_claim(hub):
    store = hub.app.state.services.store
    task = await hub.submit("sr-cardio", None)
    assert [t.name for t in fired("Task", None, task)][:1] == ["consultation-routed"]
    # orgB's coordinator; orgD's practitioners (it has no coordinator)
    assert await concerned(store, "consultation-routed", task) == ["PractitionerRole/coordinator-role",
                                                                   "PractitionerRole/dcardio-role"]
    done = (await hub.op("dcardio", f"Task/{task['id']}/$claim")).json()
    assert "consultation-routed" in [t.name for t in fired("Task", task, done)]
    assert await concerned(store, "consultation-routed", done) == ["PractitionerRole/dcardio-role"]
