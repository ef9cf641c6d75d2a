"""A ConsultTask's workflow elements change only through the operations, not by PUT or PATCH."""

from __future__ import annotations

import pytest

from operations.consult.routing import ROUTING
from tests.operations.consult.conftest import as_, problem

pytestmark = pytest.mark.req("SPB-3.3")


async def test_put_changing_the_status_is_refused(desk, client):
    task = await desk.submit()
    r = await client.put(f"/Task/{task['id']}", json=task | {"status": "completed"})
    problem(r, 422, "processing", "Task.status")
    assert (await desk.task(task["id"])).json()["status"] == "requested"


async def test_patch_changing_the_status_or_owner_is_refused(desk, client):
    task = await desk.submit()
    ops = [{"op": "replace", "path": "/status", "value": "in-progress"}]
    r = await client.patch(f"/Task/{task['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    problem(r, 422, "processing", "Task.status")
    ops = [{"op": "replace", "path": "/owner/reference", "value": "PractitionerRole/outsider-role"}]
    r = await client.patch(f"/Task/{task['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    problem(r, 422, "processing", "Task.owner")


async def test_a_transaction_changing_the_status_is_refused(desk, client):
    task = await desk.submit()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": task | {"status": "cancelled"}, "request": {"method": "PUT", "url": f"Task/{task['id']}"}}]}
    assert (await client.post("", json=bundle)).status_code == 422


async def test_dropping_the_profile_is_refused(desk, client):
    task = await desk.submit()
    r = await client.put(f"/Task/{task['id']}", json={k: v for k, v in task.items() if k != "meta"})
    problem(r, 422, "processing", "Task.meta.profile")


async def test_other_elements_may_be_edited(desk, client):
    task = await desk.submit()
    r = await client.put(f"/Task/{task['id']}", json=task | {"description": "Cardiology, please"})
    assert r.status_code == 200, r.text


async def test_the_candidates_of_an_offered_task_change_only_by_routing(desk, client):
    """A participant cannot offer the consultation to another organisation by editing the Task."""
    task = await desk.submit(org=None)
    candidates = [i for i in task.get("input", [])]
    task["input"] = [*candidates, {"type": {"coding": [{"system": ROUTING, "code": "candidate"}]},
                                   "valueReference": {"reference": "Organization/orgC"}}]
    r = await client.put(f"/Task/{task['id']}", json=task, headers=as_(desk.app, "requester"))
    problem(r, 422, "processing", "Task.input")
    # other inputs may still be added
    task["input"] = [*candidates, {"type": {"text": "note for the consultant"}, "valueString": "fasting"}]
    r = await client.put(f"/Task/{task['id']}", json=task, headers=as_(desk.app, "requester"))
    assert r.status_code == 200, r.text
