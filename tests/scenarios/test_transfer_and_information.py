"""Scenarios over real HTTP (SPB manual 3.3, 965n p.20): a consultant hands a request to a
colleague with a reason, and asks the requester for information while the deadline clock stops."""

from __future__ import annotations

import pytest

from operations.consult.codes import REMAINING
from operations.consult.deadline import parse_instant
from tests.scenarios import world
from tests.scenarios.region import ref


async def _submitted(region, sr_id: str, priority: str = "urgent") -> tuple[dict, object]:
    await region.load([*world.resources(), world.request(sr_id, priority)])
    await region.enrol(world.users())
    petrov = await region.login("petrov")
    r = await petrov.op(f"ServiceRequest/{sr_id}/$submit", organization=ref("Organization/regional"))
    assert r.status_code == 201, r.text
    return r.json(), petrov


@pytest.mark.req("SPB-3.3")
async def test_a_consultant_transfers_the_request_to_a_colleague_with_a_reason(region):
    task, petrov = await _submitted(region, "kz-transfer")
    ivanova, sidorov, belov = [await region.login(u) for u in ("ivanova", "sidorov", "belov")]
    path = f"Task/{task['id']}"

    r = await ivanova.op(f"{path}/$accept")
    assert r.status_code == 200 and r.json()["owner"] == ref(world.role("ivanova")), r.text

    # Not to a doctor of another organisation, and never without a reason.
    r = await ivanova.op(f"{path}/$transfer", owner=ref(world.role("belov")), reason="oncology question")
    assert r.status_code == 422, r.text
    r = await ivanova.http.post(f"/{path}/$transfer", json={"resourceType": "Parameters", "parameter": [
        {"name": "owner", "valueReference": ref(world.role("sidorov"))}]})
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "required", r.text

    r = await ivanova.op(f"{path}/$transfer", owner=ref(world.role("sidorov")), reason="on leave from tomorrow")
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["owner"] == ref(world.role("sidorov")) and moved["status"] == "in-progress"
    assert any("on leave from tomorrow" in n["text"] for n in moved.get("note", []))

    # The new owner works on it; the previous one still reads it; the requester sees the change.
    assert (await sidorov.read(path))["owner"] == ref(world.role("sidorov"))
    assert (await ivanova.read(path))["meta"]["versionId"] == moved["meta"]["versionId"]
    assert (await petrov.read(path))["owner"] == ref(world.role("sidorov"))
    assert (await belov.get(path)).status_code == 404
    # The transfer's Provenance names both doctors and the reason.
    found = await petrov.get("Provenance", target=path)
    version = f"{path}/_history/{moved['meta']['versionId']}"
    prov = [e["resource"] for e in found.json().get("entry", [])
            if version in [t["reference"] for t in e["resource"]["target"]]]
    assert len(prov) == 1 and prov[0]["reason"][0]["text"] == "on leave from tomorrow"
    assert {a["who"]["reference"] for a in prov[0]["agent"]} >= {world.role("ivanova"), world.role("sidorov")}
    # Sidorov hears of it by e-mail (the consultation was routed to him).
    assert await region.mails("sidorov@kuzbass.example")


@pytest.mark.req("RU-20")
@pytest.mark.req("SPB-3.3")
async def test_an_information_request_pauses_the_deadline_clock_until_the_requester_answers(region):
    task, petrov = await _submitted(region, "kz-info")
    sidorov = await region.login("sidorov")
    path = f"Task/{task['id']}"
    due = parse_instant(task["restriction"]["period"]["end"])
    assert (await sidorov.op(f"{path}/$accept")).status_code == 200

    # A comment is required.
    r = await sidorov.op(f"{path}/$request-info")
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "required", r.text
    r = await sidorov.op(f"{path}/$request-info", comment="Please attach the latest ECG")
    assert r.status_code == 200, r.text
    held = r.json()
    assert held["status"] == "on-hold" and held["businessStatus"]["coding"][0]["code"] == "awaiting-information"
    assert "end" not in held["restriction"]["period"]
    left = next(e["valueDuration"]["value"] for e in held["extension"] if e["url"] == REMAINING)
    asked_at = parse_instant(held["lastModified"])
    assert abs(left - (due - asked_at).total_seconds()) < 1

    # The requester gets the question as a message and by e-mail, and answers with a file.
    messages = (await petrov.get("Communication", **{"based-on": "ServiceRequest/kz-info"})).json()
    assert any("latest ECG" in p.get("contentString", "") for e in messages.get("entry", [])
               for p in e["resource"].get("payload", []))
    assert await region.mails("petrov@kuzbass.example")
    r = await petrov.op(f"{path}/$provide-info", comment="ECG attached",
                        attachment={"contentType": "application/pdf", "title": "ECG 2026-12-05",
                                    "data": "JVBERi0xLjQK"})
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["status"] == "in-progress" and REMAINING not in str(resumed.get("extension", ""))
    new_due = parse_instant(resumed["restriction"]["period"]["end"])
    answered_at = parse_instant(resumed["lastModified"])
    # the due time moved by the time the clock stood still
    assert abs((new_due - answered_at).total_seconds() - left) < 1
    assert abs(((new_due - due) - (answered_at - asked_at)).total_seconds()) < 1
