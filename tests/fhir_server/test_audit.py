"""AuditEvents: every read, search and write touching patient data is recorded; admins only see them."""

from __future__ import annotations

import base64

import pytest

from tests.tokens import auth

pytestmark = pytest.mark.req("CN-4.4")
DOCTOR = {"fhirUser": "Practitioner/doc"}


async def _events(app, client, **params) -> list[dict]:
    await app.state.services.auditor.flush()
    r = await client.get("/AuditEvent", params={**params, "_count": "1000"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _entities(event: dict, role: str) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", []) if e["role"]["code"] == role and "what" in e}


async def test_a_write_is_recorded_in_the_same_commit(app, client):
    h = auth(app, "user/*.cruds", **DOCTOR)
    assert (await client.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})).status_code in (200, 201)
    r = await client.post("/Observation", headers=h, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "pulse"}, "subject": {"reference": "Patient/p1"}})
    assert r.status_code == 201
    oid = r.json()["id"]
    # no flush: the write's record was committed with it
    r = await client.get("/AuditEvent", params={"entity": f"Observation/{oid}"})
    events = [e["resource"] for e in r.json()["entry"]]
    assert len(events) == 1
    ev = events[0]
    assert ev["subtype"][0]["code"] == "create" and ev["action"] == "C" and ev["outcome"] == "0"
    assert _entities(ev, "1") == {"Patient/p1"}
    assert ev["agent"][0]["who"] == {"reference": "Practitioner/doc"} and ev["agent"][0]["requestor"] is True


async def test_reads_and_searches_are_recorded(app, client):
    await client.put("/Patient/p2", json={"resourceType": "Patient", "id": "p2"})
    r = await client.post("/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "t"}, "subject": {"reference": "Patient/p2"}})
    oid = r.json()["id"]
    h = auth(app, "user/*.rs", **DOCTOR)
    assert (await client.get(f"/Observation/{oid}", headers=h)).status_code == 200
    assert (await client.get("/Observation", params={"subject": "Patient/p2"}, headers=h)).status_code == 200
    events = await _events(app, client, patient="Patient/p2")
    kinds = {e["subtype"][0]["code"] for e in events}
    assert {"create", "read", "search-type"} <= kinds
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")
    query = next(x["query"] for x in search["entity"] if "query" in x)
    assert base64.b64decode(query).decode() == "Observation?subject=Patient%2Fp2"


async def test_transactions_are_recorded_once_with_every_resource(app, client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
         "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = await client.post("", json=bundle)
    assert r.status_code == 200
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    events = await _events(app, client, subtype="transaction")
    mine = [e for e in events if f"Patient/{pid}" in _entities(e, "4")]
    assert len(mine) == 1 and len(_entities(mine[0], "4")) == 2 and _entities(mine[0], "1") == {f"Patient/{pid}"}


async def test_only_administrators_see_audit_events(app, client):
    r = await client.get("/AuditEvent", headers=auth(app, "user/*.cruds", **DOCTOR))
    assert r.status_code == 403
    r = await client.get("/AuditEvent", headers=auth(app, "patient/*.rs", patient="p1"))
    assert r.status_code == 403
    assert (await client.get("/AuditEvent", headers=auth(app, "system/*.*"))).status_code == 200


async def test_a_callers_repeated_reads_are_one_event_listing_each_resource(app, client):
    for pid in ("r1", "r2"):
        await client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    await app.state.services.auditor.flush()
    h = auth(app, "user/*.rs", fhirUser="Practitioner/reader")
    for pid in ("r1", "r1", "r2", "r1"):
        assert (await client.get(f"/Patient/{pid}", headers=h)).status_code == 200
    events = [e for e in await _events(app, client, subtype="read", agent="Practitioner/reader")]
    assert len(events) == 1
    assert _entities(events[0], "4") == {"Patient/r1", "Patient/r2"}
    assert _entities(events[0], "1") == {"Patient/r1", "Patient/r2"}
    assert events[0]["period"]["start"] < events[0]["period"]["end"]
