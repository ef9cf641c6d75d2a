"""Scenario over real HTTP (965n p.19, SPB 3.1): an emergency request nobody takes in time goes
overdue; the requester hears of it and the consulting organisation's coordinator is alerted."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from fhir_server.subscriptions.topics import DEADLINE
from operations.consult import deadline
from operations.consult.deadline import parse_instant
from tests.scenarios import world
from tests.scenarios.region import ref

# The regional hospital answers emergencies within 3 seconds (a policy stricter than 965n's 2 hours).
FAST = {"url": deadline.POLICY, "extension": [
    {"url": "form-of-care", "valueCode": "emergency"},
    {"url": "deadline", "valueDuration": {"value": 3, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"}}]}


@pytest.mark.req("RU-19")
@pytest.mark.req("UA-VI.14")
async def test_an_emergency_request_goes_overdue_and_escalates_to_the_coordinators(region):
    people = world.resources()
    next(r for r in people if r["resourceType"] == "Organization" and r["id"] == "regional")["extension"] = [FAST]
    await region.load([*people, world.request("kz-stat", "stat")])
    await region.enrol(world.users())
    petrov, orlova = await region.login("petrov"), await region.login("orlova")

    r = await petrov.op("ServiceRequest/kz-stat/$submit", organization=ref("Organization/regional"))
    assert r.status_code == 201, r.text
    task = r.json()
    period = task["restriction"]["period"]
    assert parse_instant(period["end"]) - parse_instant(period["start"]) == timedelta(seconds=3)

    # Nobody accepts it: the sweeper flags it once it is past due.
    path = f"Task/{task['id']}"
    for _ in range(150):
        seen = await petrov.read(path)
        if any(t.get("system") == DEADLINE for t in seen["meta"].get("tag", [])):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the Task was never flagged overdue")
    assert {"system": DEADLINE, "code": "overdue"}.items() <= next(
        t for t in seen["meta"]["tag"] if t.get("system") == DEADLINE).items()
    assert seen["status"] == "requested"  # still waiting: the flag records it was late

    # The requester and the regional hospital's coordinator get the alert (in Russian by default).
    assert await region.mails("petrov@kuzbass.example", "истёк")
    assert await region.mails("orlova@kuzbass.example", "истёк")
    # The coordinator sees the overdue Task in the organisation's queue and can act on it.
    found = await orlova.get("Task", _tag=f"{DEADLINE}|overdue", owner="Organization/regional")
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [task["id"]]
