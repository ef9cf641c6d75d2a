"""ServiceRequest/$submit: the request becomes active, its ConsultTask is created with a due time."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from operations.consult.codes import CONSULT_TASK, forms_of_care
from tests.operations.consult.conftest import draft, problem, ref


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.req("RU-14")
async def test_submit_activates_the_request_and_creates_its_task(desk, client):
    task = await desk.submit()
    assert task["meta"]["profile"] == [CONSULT_TASK]
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "urgent")
    assert task["businessStatus"]["coding"][0]["code"] == "awaiting-acceptance"
    assert task["basedOn"] == [ref("ServiceRequest/sr1")] and task["for"] == ref("Patient/p1")
    assert task["requester"] == ref("PractitionerRole/requester-role")
    assert task["owner"] == ref("Organization/orgB")
    assert (await client.get("/ServiceRequest/sr1")).json()["status"] == "active"


async def test_submit_writes_provenance_and_audit_in_the_same_commit(desk, client):
    task = await desk.submit()
    prov = (await client.get(f"/Provenance?target=Task/{task['id']}")).json()
    assert len(prov["entry"]) == 1
    assert prov["entry"][0]["resource"]["agent"][0]["who"] == ref("PractitionerRole/requester-role")
    audit = (await client.get(f"/AuditEvent?entity=Task/{task['id']}")).json()
    assert [e["resource"]["subtype"][0]["code"] for e in audit["entry"]] == ["operation"]


@pytest.mark.req("RU-19")
@pytest.mark.req("RU-14")
@pytest.mark.parametrize("sr,hours", [("sr-stat", 2), ("sr1", 24)])
async def test_due_time_of_emergency_and_urgent_requests(desk, sr, hours):
    task = await desk.submit(sr)
    period = task["restriction"]["period"]
    assert at(period["end"]) - at(period["start"]) == timedelta(hours=hours)
    assert abs(at(period["start"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)


@pytest.mark.req("RU-19")
@pytest.mark.req("UA-VI.12")
async def test_a_planned_request_is_due_at_the_end_of_the_day_of_receipt(desk):
    task = await desk.submit("sr-routine")
    period = task["restriction"]["period"]
    received = at(period["start"])
    assert at(period["end"]) == datetime.combine(received.date(), time.max, tzinfo=timezone.utc)


@pytest.mark.req("RU-14")
async def test_forms_of_care_map_to_priorities():
    assert forms_of_care() == {"stat": ("emergency", "PT2H"), "urgent": ("urgent", "PT24H"),
                               "routine": ("planned", "end-of-day")}


@pytest.mark.req("RU-14")
@pytest.mark.parametrize("priority", [None, "asap"])
async def test_a_request_without_a_form_of_care_is_refused(desk, client, priority):
    assert (await client.put("/ServiceRequest/sr9", json=draft("sr9", priority))).status_code == 201
    r = await desk.op("requester", "ServiceRequest/sr9/$submit")
    problem(r, 422, "processing", "ServiceRequest.priority")
    assert (await client.get("/ServiceRequest/sr9")).json()["status"] == "draft"


async def test_submit_without_a_target_leaves_the_task_unowned(desk):
    task = await desk.submit(org=None)
    assert "owner" not in task


async def test_an_unknown_target_organisation_is_refused(desk):
    r = await desk.op("requester", "ServiceRequest/sr1/$submit", organization=ref("Organization/nowhere"))
    problem(r, 422, "processing", "Parameters.parameter.where(name='organization')")


async def test_only_a_draft_can_be_submitted(desk):
    await desk.submit()
    r = await desk.op("requester", "ServiceRequest/sr1/$submit", organization=ref("Organization/orgB"))
    problem(r, 409, "conflict", "ServiceRequest.status")


async def test_only_the_requester_may_submit(desk, client):
    # the consultant cannot see the request at all; the coordinator of orgB neither
    problem(await desk.op("consultant1", "ServiceRequest/sr1/$submit"), 404, "not-found")
    # a system client acts in no practitioner's name
    problem(await client.post("/ServiceRequest/sr1/$submit", json={"resourceType": "Parameters"}), 403, "forbidden")


async def test_unknown_parameters_are_refused(desk):
    r = await desk.op("requester", "ServiceRequest/sr1/$submit", target="orgB")
    problem(r, 400, "invalid", "Parameters.parameter[0]")


async def test_operations_are_in_the_capability_statement(client):
    rest = (await client.get("/metadata")).json()["rest"][0]
    ops = {r["type"]: [o["name"] for o in r.get("operation", [])] for r in rest["resource"]}
    assert "submit" in ops["ServiceRequest"]
    assert {"accept", "transfer", "request-info", "provide-info", "refuse", "cancel"} <= set(ops["Task"])
