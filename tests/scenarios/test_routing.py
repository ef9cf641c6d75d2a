"""Routing scenarios over real HTTP (Chinese remote services spec 1, 3(1), 3(3)2; Kuzbass): a
refusal on formal grounds and the request routed again, a platform-matched request claimed by
one of two candidate organisations at the same moment, and the special route for oncology."""

from __future__ import annotations

import asyncio

import pytest

from operations.consult.codes import REFUSAL_REASON
from tests.scenarios import world
from tests.scenarios.region import ref


def _candidates(task: dict) -> list[str]:
    return [i["valueReference"]["reference"] for i in task.get("input", [])
            if i["type"]["coding"][0]["code"] == "candidate"]


def _status(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


async def _region(region, *requests: dict):
    await region.load([*world.resources(), *requests])
    await region.enrol(world.users())


@pytest.mark.req("CN-3.2")
@pytest.mark.req("SPB-3.3")
@pytest.mark.req("CN-1")
async def test_a_refusal_on_formal_grounds_and_the_request_routed_again(region):
    await _region(region, world.request("kz-refused"))
    petrov, ivanova, volkov = [await region.login(u) for u in ("petrov", "ivanova", "volkov")]
    r = await petrov.op("ServiceRequest/kz-refused/$submit", organization=ref("Organization/regional"))
    assert r.status_code == 201, r.text
    first = f"Task/{r.json()['id']}"

    # A refusal needs a reason from the code system and a text.
    r = await ivanova.op(f"{first}/$refuse", text="No ECG attached")
    assert r.status_code == 400, r.text
    r = await ivanova.op(f"{first}/$refuse", reason={"system": REFUSAL_REASON, "code": "incomplete-documentation"},
                         text="No ECG attached")
    assert r.status_code == 200, r.text
    refused = r.json()
    assert refused["status"] == "rejected" and refused["statusReason"]["text"] == "No ECG attached"
    # The requester is told (CN-3.2) and the request stays active, to be routed again.
    assert await region.mails("petrov@kuzbass.example")
    assert (await petrov.read("ServiceRequest/kz-refused"))["status"] == "active"

    # Routed again by platform matching: the hospital that refused is not offered it again.
    r = await petrov.op(f"{first}/$route")
    assert r.status_code == 200, r.text
    successor = next(o["valueReference"]["reference"] for o in r.json()["output"])
    assert r.json()["status"] == "rejected"  # the refusal stays on record
    task = await petrov.read(successor)
    assert task["status"] == "requested" and _status(task) == "offered"
    assert _candidates(task) == ["Organization/cardio"]
    assert (await petrov.op(f"{first}/$route")).status_code == 409  # route the successor, not the refused one

    # The cardiology dispensary's doctor sees the offer and claims it.
    offers = await volkov.get("Task", _query="available")
    assert successor.split("/")[1] in [e["resource"]["id"] for e in offers.json().get("entry", [])]
    r = await volkov.op(f"{successor}/$claim")
    assert r.status_code == 200 and r.json()["owner"] == ref(world.role("volkov")), r.text
    # The refusing hospital keeps its record of the refusal (as a past participant it still reads
    # the consultation), but the new Task was never offered to it and it cannot take it.
    assert (await ivanova.read(first))["status"] == "rejected"
    offered = await ivanova.get("Task", _query="available")
    assert successor.split("/")[1] not in [e["resource"]["id"] for e in offered.json().get("entry", [])]
    assert (await ivanova.op(f"{successor}/$claim")).status_code in (403, 409)


@pytest.mark.req("CN-1")
@pytest.mark.req("CN-10")
async def test_two_candidate_organisations_claim_at_the_same_moment_and_exactly_one_wins(region):
    await _region(region, world.request("kz-open"))
    petrov, ivanova, volkov = [await region.login(u) for u in ("petrov", "ivanova", "volkov")]
    r = await petrov.op("ServiceRequest/kz-open/$submit")  # no organisation: the platform matches it
    assert r.status_code == 201, r.text
    task = r.json()
    assert _status(task) == "offered" and "owner" not in task
    assert sorted(_candidates(task)) == ["Organization/cardio", "Organization/regional"]
    path = f"Task/{task['id']}"
    # Both candidates see the offer.
    assert (await ivanova.read(path))["id"] == (await volkov.read(path))["id"]

    answers = await asyncio.gather(ivanova.op(f"{path}/$claim"), volkov.op(f"{path}/$claim"))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 200)
    loser = ivanova if winner["owner"] == ref(world.role("volkov")) else volkov
    assert winner["status"] == "in-progress"
    task = await petrov.read(path)
    assert task["owner"] == winner["owner"] and task["meta"]["versionId"] == winner["meta"]["versionId"]
    # The losing organisation no longer sees the consultation.
    assert (await loser.get(path)).status_code in (404, 409)
    assert path.split("/")[1] not in [e["resource"]["id"] for e in
                                      (await loser.get("Task", _query="available")).json().get("entry", [])]


@pytest.mark.req("KZ-6")
@pytest.mark.req("CN-10")
async def test_an_oncology_request_goes_only_to_the_oncology_centre(region):
    oncology = world.request("kz-onco", performerType={"coding": [world.ONCOLOGIST]})
    await _region(region, oncology)
    petrov, belov = await region.login("petrov"), await region.login("belov")
    r = await petrov.op("ServiceRequest/kz-onco/$submit")
    assert r.status_code == 201, r.text
    task = r.json()
    assert _candidates(task) == ["Organization/oncology"]
    r = await belov.op(f"Task/{task['id']}/$claim")
    assert r.status_code == 200, r.text
