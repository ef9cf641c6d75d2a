"""A consultation request is checked against TelemedRequest when it is submitted: an incomplete
draft saves (SPB-D) but ``$submit`` refuses it, naming what is missing (both stores)."""

from __future__ import annotations

import pytest

from operations.consult.codes import CONSULT_TASK
from profiles import CANONICAL
from tests.operations.consult.conftest import desk, draft, problem  # noqa: F401  (the fixture)

TELEMED_REQUEST = f"{CANONICAL}/StructureDefinition/TelemedRequest"
TREATED_SINCE = f"{CANONICAL}/StructureDefinition/treated-since"


def bare(id: str) -> dict:
    """A draft with only what makes it a consultation request."""
    sr = draft(id)
    for key in ("reasonCode", "occurrencePeriod", "performerType", "supportingInfo", "extension"):
        sr.pop(key)
    return sr


def expressions(r) -> set[str]:
    return {x for i in r.json()["issue"] for x in i.get("expression", [])}


@pytest.mark.req("SPB-D")
@pytest.mark.req("CN-3.1")
@pytest.mark.req("KZ-2")
@pytest.mark.req("UA-4")
@pytest.mark.req("RU-2")
async def test_an_incomplete_draft_saves_but_is_not_submitted(desk, client):
    r = await client.put("/ServiceRequest/sr9", json=bare("sr9"))
    assert r.status_code == 201, r.text
    r = await desk.op("requester", "ServiceRequest/sr9/$submit", organization={"reference": "Organization/orgB"})
    problem(r, 422, "invariant")
    assert expressions(r) == {"ServiceRequest.reasonCode", "ServiceRequest.reasonCode.text", "ServiceRequest.occurrence",
                              "ServiceRequest.performerType", "ServiceRequest.supportingInfo",
                              f"ServiceRequest.extension('{TREATED_SINCE}')"}
    assert (await client.get("/ServiceRequest/sr9")).json()["status"] == "draft"
    assert (await client.get("/Task", params={"based-on": "ServiceRequest/sr9"})).json().get("entry") is None


@pytest.mark.req("SPB-D")
@pytest.mark.req("KZ-2")
async def test_a_draft_finished_later_is_submitted(desk, client):
    sr = bare("sr9") | {"meta": {"profile": [TELEMED_REQUEST]}}  # the client may claim the profile early
    assert (await client.put("/ServiceRequest/sr9", json=sr)).status_code == 201
    r = await desk.op("requester", "ServiceRequest/sr9/$submit", organization={"reference": "Organization/orgB"})
    assert expressions(r) >= {f"ServiceRequest.extension('{TREATED_SINCE}')"}
    done = {**draft("sr9"), "meta": {"profile": [TELEMED_REQUEST]}}
    assert (await client.put("/ServiceRequest/sr9", json=done)).status_code == 200
    task = await desk.submit("sr9")
    assert task["meta"]["profile"] == [CONSULT_TASK]


async def test_a_submitted_request_claims_the_profile_and_stays_checked(desk, client):
    await desk.submit()
    sr = (await client.get("/ServiceRequest/sr1")).json()
    assert sr["meta"]["profile"] == [TELEMED_REQUEST] and sr["status"] == "active"
    sr.pop("performerType")
    r = await client.put("/ServiceRequest/sr1", json=sr)
    problem(r, 422, "invariant", "ServiceRequest.performerType")
    tx = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"resource": sr, "request": {"method": "PUT", "url": "ServiceRequest/sr1"}}]}
    r = await client.post("", json=tx)
    problem(r, 422, "invariant", "Bundle.entry[0].resource.performerType")


@pytest.mark.req("RU-15")
async def test_a_mode_outside_consultation_mode_is_refused_at_submission(desk, client):
    sr = draft("sr9")
    sr["extension"].append({"url": f"{CANONICAL}/StructureDefinition/consultation-mode",
                            "valueCoding": {"system": f"{CANONICAL}/CodeSystem/consultation-mode", "code": "by-post"}})
    assert (await client.put("/ServiceRequest/sr9", json=sr)).status_code == 201
    r = await desk.op("requester", "ServiceRequest/sr9/$submit", organization={"reference": "Organization/orgB"})
    problem(r, 422, "code-invalid", "ServiceRequest.extension[1].value")


async def test_a_consult_task_is_checked_on_every_change(desk, client):
    task = await desk.submit()
    task["code"] = {"text": "something else"}
    r = await client.put(f"/Task/{task['id']}", json=task)
    problem(r, 422, "code-invalid", "Task.code")
