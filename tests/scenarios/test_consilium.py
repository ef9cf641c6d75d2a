"""A three-doctor consilium over real HTTP (Ukrainian order VI.17; 965n p.25, p.33): one request
to three consultants of two organisations; the protocol is complete only when the last of them
(and then the chair's organisation) has signed, and until then the requester sees it in progress."""

from __future__ import annotations

import pytest

from tests.operations.consult.signing import FORM, Signer
from tests.scenarios import world
from tests.scenarios.region import ref
from tests.scenarios.test_kuzbass import _sign


@pytest.mark.req("UA-VI.17")
@pytest.mark.req("RU-25")
@pytest.mark.req("RU-57")
@pytest.mark.req("RU-8")
async def test_a_three_doctor_consilium_completes_with_the_last_signature(region):
    keys = {u: Signer(u) for u in ("ivanova", "sidorov", "belov")}
    seal = Signer("Kuzbass regional clinical hospital", kind="RSA")
    people = world.resources()
    for r in people:
        if r["resourceType"] == "Organization" and r["id"] == "regional":
            r["extension"] = [seal.registration()]
        if r["resourceType"] == "Practitioner" and r["id"] == "belov":
            r["extension"] = [keys["belov"].registration()]  # Dr Belov signs with a registered key
    await region.load([*people, world.request("kz-council", kind="consilium")])
    await region.enrol(world.users())
    petrov, ivanova, sidorov, belov = [await region.login(u) for u in ("petrov", "ivanova", "sidorov", "belov")]
    service = await region.service("Regional hospital signing service", "system/*.cruds")

    seats = [ref("Organization/regional"), ref("Organization/regional"), ref("Organization/oncology")]
    r = await petrov.op("ServiceRequest/kz-council/$submit", participant=seats)
    assert r.status_code == 201, r.text
    council = f"Task/{r.json()['id']}"
    found = (await petrov.get("Task", **{"part-of": council})).json()
    by_org: dict[str, list[str]] = {}
    for e in found["entry"]:
        by_org.setdefault(e["resource"]["owner"]["reference"], []).append(f"Task/{e['resource']['id']}")
    assert sorted(len(v) for v in by_org.values()) == [1, 2]

    # Each consultant takes a seat.
    for person, seat in ((ivanova, by_org["Organization/regional"][0]), (sidorov, by_org["Organization/regional"][1]),
                         (belov, by_org["Organization/oncology"][0])):
        r = await person.op(f"{seat}/$accept")
        assert r.status_code == 200, r.text

    # Dr Ivanova chairs: she completes the coordinating Task with the protocol.
    r = await ivanova.op(f"{council}/$complete", **FORM)
    assert r.status_code == 200, r.text
    protocol = next(o["valueReference"]["reference"] for o in r.json()["output"]
                    if o["type"]["coding"][0]["code"] == "protocol")
    attesters = (await petrov.read(protocol))["attester"]
    assert len(attesters) == 4  # three doctors and the chair's organisation

    # Each signature leaves the consilium in progress for the requester, until the last one.
    for person, signer in ((ivanova, keys["ivanova"]), (sidorov, keys["sidorov"])):
        await _sign(person, protocol, signer)
        assert (await petrov.read(council))["status"] == "in-progress"
    got = await belov.http.get(f"/{protocol}/$sign")
    r = await belov.http.post(f"/{protocol}/$sign", json={"resourceType": "Parameters", "parameter": [
        {"name": "signature", "valueString": keys["belov"].sign(got.content, x5c=False)}]})
    assert r.status_code == 201, r.text
    assert (await petrov.read(council))["status"] == "in-progress"  # the seal is missing still
    await _sign(service, protocol, seal)

    done = await petrov.read(council)
    assert done["status"] == "completed"
    for seat in [*by_org["Organization/regional"], *by_org["Organization/oncology"]]:
        assert (await petrov.read(seat))["status"] == "completed"
    checked = (await petrov.get(f"{protocol}/$verify-signatures")).json()
    assert {"name": "complete", "valueBoolean": True} in checked["parameter"]
    signatures = [s for s in checked["parameter"] if s["name"] == "signature"]
    assert len(signatures) == 4
    assert all(next(p["valueCoding"]["code"] for p in s["part"] if p["name"] == "status") == "valid"
               for s in signatures)
    assert await region.mails("petrov@kuzbass.example")
