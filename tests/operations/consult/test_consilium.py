"""A consilium: one request to several consultants; a child Task per seat; the protocol signed by
every member and sealed; the requester sees it in progress until the last signature."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.auth.consultation import KIND
from tests.operations.consult.conftest import as_, draft, problem, ref
from tests.operations.consult.signing import FORM, Signer, sign
from tests.operations.consult.test_sign import register, verify

ORG_B, ORG_D = ref("Organization/orgB"), ref("Organization/orgD")


@pytest.fixture
async def council(desk, client):
    """A third consultant in organisation D (which consults for A), specialties, a consilium draft."""
    extra = [{"resourceType": "Organization", "id": "orgD", "name": "orgD"},
             {"resourceType": "OrganizationAffiliation", "id": "orgD-for-orgA", "active": True,
              "organization": ref("Organization/orgA"), "participatingOrganization": ORG_D},
             {"resourceType": "Practitioner", "id": "consultant3", "name": [{"family": "consultant3"}]},
             {"resourceType": "PractitionerRole", "id": "consultant3-role", "active": True,
              "practitioner": ref("Practitioner/consultant3"), "organization": ORG_D,
              "specialty": [{"text": "Neurology"}]},
             {**draft("sr-council"), "category": [{"coding": [{"system": KIND, "code": "consilium"}]}]}]
    for r in extra:
        assert (await client.put(f"/{r['resourceType']}/{r['id']}", json=r)).status_code in (200, 201)
    return desk


async def _seats(desk, task_id: str, who: str = "requester") -> list[dict]:
    r = await desk.client.get(f"/Task?part-of=Task/{task_id}", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    return sorted((e["resource"] for e in r.json().get("entry", [])), key=lambda t: t["description"])


def _state(task: dict) -> tuple[str, str]:
    return task["status"], task["businessStatus"]["coding"][0]["code"]


@pytest.mark.req("UA-VI.17")
@pytest.mark.req("RU-25")
async def test_three_doctor_consilium_completes_with_the_last_signature(council, client):
    desk = council
    r = await desk.op("requester", "ServiceRequest/sr-council/$submit", participant=[ORG_B, ORG_B, ORG_D])
    assert r.status_code == 201, r.text
    coordinating = r.json()
    assert "owner" not in coordinating and _state(coordinating) == ("requested", "awaiting-acceptance")
    seats = await _seats(desk, coordinating["id"])
    assert [s["owner"] for s in seats] == [ORG_B, ORG_B, ORG_D]
    assert all(s["partOf"] == [ref(f"Task/{coordinating['id']}")] for s in seats)
    # each participant accepts their seat; the protocol waits for every seat
    assert (await desk.op("consultant1", f"Task/{seats[0]['id']}/$accept")).status_code == 200
    problem(await desk.op("consultant2", f"Task/{seats[0]['id']}/$accept"), 409, "conflict")
    assert (await desk.op("consultant2", f"Task/{seats[1]['id']}/$accept")).status_code == 200
    problem(await desk.op("consultant2", f"Task/{coordinating['id']}/$complete", **FORM), 409, "conflict",
            "Task.status")
    assert (await desk.op("consultant3", f"Task/{seats[2]['id']}/$accept")).status_code == 200
    problem(await desk.op("consultant3", f"Task/{seats[2]['id']}/$complete", **FORM), 422, "processing",
            "Task.partOf")
    # one member (the chair) writes the protocol for all
    r = await desk.op("consultant2", f"Task/{coordinating['id']}/$complete", **FORM)
    assert r.status_code == 200, r.text
    assert _state(r.json()) == ("in-progress", "awaiting-signatures")
    protocol_ref = next(o["valueReference"]["reference"] for o in r.json()["output"]
                        if o["type"]["coding"][0]["code"] == "protocol")
    protocol = (await desk.client.get(f"/{protocol_ref}", headers=as_(desk.app, "consultant3"))).json()
    members = [ref(f"PractitionerRole/consultant{n}-role") for n in (2, 1, 3)]
    assert [a["party"] for a in protocol["attester"]] == [*members, ORG_B]
    assert protocol["author"] == members and "consilium" in protocol["title"]
    document = (await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "consultant1"))).json()
    assert any(e["resource"].get("specialty") == [{"text": "Neurology"}] for e in document["entry"])
    # every member signs; until the last signature the requester sees the consilium in progress
    seal = Signer("Clinic B", "RSA")
    await register(client, "Organization/orgB", seal)
    for n, who in enumerate(("consultant2", "consultant1", "consultant3")):
        r = await sign(desk, protocol_ref, who, Signer(who))
        assert r.status_code == 201, r.text
        kind = r.json()["signature"][0]["type"][0]["code"]
        assert kind == ("1.2.840.10065.1.12.1.1" if n == 0 else "1.2.840.10065.1.12.1.3")  # author, co-participant
        assert _state((await desk.task(coordinating["id"], "requester")).json()) == ("in-progress",
                                                                                    "awaiting-signatures")
        if n == 1:  # the seal comes after every member
            problem(await sign(desk, protocol_ref, None, seal, x5c=False), 409, "conflict", "Composition.attester")
    assert (await sign(desk, protocol_ref, None, seal, x5c=False)).status_code == 201
    assert _state((await desk.task(coordinating["id"], "requester")).json()) == ("completed", "completed")
    assert [_state(s) for s in await _seats(desk, coordinating["id"])] == [("completed", "completed")] * 3
    checked = await verify(desk, protocol_ref, "consultant3")
    assert checked["complete"] is True and [s["status"]["code"] for s in checked["signatures"]] == ["valid"] * 4


@pytest.mark.req("UA-VI.17")
async def test_a_consilium_is_sent_to_two_or_more_organisations_under_agreements(council):
    desk = council
    op = "ServiceRequest/sr-council/$submit"
    problem(await desk.op("requester", op, participant=[ORG_B]), 422, "processing",
            "Parameters.parameter.where(name='participant')")
    problem(await desk.op("requester", op, participant=[ORG_B, ref("Organization/nowhere")]), 422, "processing",
            "Parameters.parameter.where(name='participant')[1]")
    problem(await desk.op("requester", op, participant=[ORG_B, ref("Organization/orgC")]), 422, "processing",
            "Parameters.parameter.where(name='participant')[1]")  # no agreement with orgC
    problem(await desk.op("requester", op, participant=[ORG_B, ORG_D], organization=ORG_B), 400, "invalid")
    problem(await desk.op("requester", "ServiceRequest/sr1/$submit", participant=[ORG_B, ORG_D]), 422, "processing",
            "Parameters.parameter.where(name='participant')")


@pytest.mark.req("RU-25")
async def test_a_refused_seat_is_left_out_and_only_members_complete(council):
    desk = council
    coordinating = (await desk.op("requester", "ServiceRequest/sr-council/$submit",
                                  participant=[ORG_B, ORG_B, ORG_D])).json()
    seats = await _seats(desk, coordinating["id"])
    assert (await desk.op("consultant1", f"Task/{seats[0]['id']}/$accept")).status_code == 200
    assert (await desk.op("consultant2", f"Task/{seats[1]['id']}/$accept")).status_code == 200
    r = await desk.op("consultant3", f"Task/{seats[2]['id']}/$refuse",
                      reason={"system": "https://telemed-fhir.org/ig/CodeSystem/refusal-reason",
                              "code": "incomplete-documentation"}, text="No MRI attached")
    assert r.status_code == 200, r.text
    problem(await desk.op("requester", f"Task/{coordinating['id']}/$complete", **FORM), 403, "forbidden")
    r = await desk.op("consultant1", f"Task/{coordinating['id']}/$complete", **FORM)
    assert r.status_code == 200, r.text
    protocol_ref = next(o["valueReference"]["reference"] for o in r.json()["output"]
                        if o["type"]["coding"][0]["code"] == "protocol")
    protocol = (await desk.client.get(f"/{protocol_ref}", headers=as_(desk.app, "consultant2"))).json()
    assert [a["party"]["reference"] for a in protocol["attester"]] == [
        "PractitionerRole/consultant1-role", "PractitionerRole/consultant2-role", "Organization/orgB"]


@pytest.mark.req("RU-25")
async def test_members_signing_at_the_same_moment_each_sign_once(council):
    desk = council
    coordinating = (await desk.op("requester", "ServiceRequest/sr-council/$submit",
                                  participant=[ORG_B, ORG_B, ORG_D])).json()
    for seat, who in zip(await _seats(desk, coordinating["id"]), ("consultant1", "consultant2", "consultant3")):
        assert (await desk.op(who, f"Task/{seat['id']}/$accept")).status_code == 200
    r = await desk.op("consultant1", f"Task/{coordinating['id']}/$complete", **FORM)
    protocol_ref = next(o["valueReference"]["reference"] for o in r.json()["output"]
                        if o["type"]["coding"][0]["code"] == "protocol")
    signers = {who: Signer(who) for who in ("consultant1", "consultant2", "consultant3")}
    results = await asyncio.gather(*(sign(desk, protocol_ref, who, key) for who, key in signers.items()),
                                   sign(desk, protocol_ref, "consultant1", signers["consultant1"]))
    assert sorted(r.status_code for r in results) == [201, 201, 201, 409], [r.text for r in results]
    checked = await verify(desk, protocol_ref)
    assert [s["status"]["code"] for s in checked["signatures"]] == ["valid", "valid", "valid", "missing"]
    assert _state((await desk.task(coordinating["id"], "requester")).json()) == ("in-progress", "awaiting-signatures")


@pytest.mark.req("UA-VI.17")
async def test_a_consilium_is_neither_routed_nor_claimed_and_is_cancelled_as_a_whole(council):
    desk = council
    r = await desk.op("requester", "ServiceRequest/sr-council/$submit", participant=[ORG_B, ORG_D])
    assert r.status_code == 201, r.text
    coordinating = r.json()["id"]
    seats = await _seats(desk, coordinating)
    problem(await desk.op("requester", f"Task/{coordinating}/$route"), 422, "processing", "Task.code")
    problem(await desk.op("consultant1", f"Task/{coordinating}/$claim"), 422, "processing", "Task.code")
    assert (await desk.op("consultant1", f"Task/{seats[0]['id']}/$accept")).status_code == 200
    # one seat is not cancelled apart: the consilium is one request
    problem(await desk.op("requester", f"Task/{seats[1]['id']}/$cancel"), 422, "processing", "Task.partOf")
    r = await desk.op("requester", f"Task/{coordinating}/$cancel", reason="the patient was transferred")
    assert r.status_code == 200 and _state(r.json()) == ("cancelled", "cancelled"), r.text
    after = await _seats(desk, coordinating)
    assert [_state(s) for s in after] == [("cancelled", "cancelled")] * 2
    assert all(s["statusReason"]["text"] == "the patient was transferred" for s in after)
    request = (await desk.client.get("/ServiceRequest/sr-council", headers=as_(desk.app, "requester"))).json()
    assert request["status"] == "revoked"
