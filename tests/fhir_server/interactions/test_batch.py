"""batch: POST [base] with a Bundle of type batch; every entry succeeds or fails on its own
(http://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

from tests.fhir_server.interactions.conftest import (
    SYS, assert_issue, create, observation, patient, post_bundle, read_json, search_ids, writes_so_far,
)


def batch(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def request(method: str, url: str, resource: dict | None = None, **extra: str) -> dict:
    e: dict = {"request": {"method": method, "url": url, **extra}}
    if resource is not None:
        e["resource"] = resource
    return e


async def run(client, *entries: dict) -> list[dict]:
    r = await post_bundle(client, batch(*entries))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["resourceType"] == "Bundle"
    assert out["type"] == "batch-response"
    assert len(out["entry"]) == len(entries)
    return out["entry"]


def status(e: dict) -> int:
    return int(e["response"]["status"][:3])


async def test_a_bad_entry_fails_alone_and_the_others_succeed(client):
    entries = await run(
        client,
        request("POST", "Patient", patient("Good", mrn="b1")),
        request("POST", "Patient", patient("Bad", foo="bar")),
        request("POST", "Patient", patient("Good too", mrn="b2")),
    )

    assert [status(e) for e in entries] == [201, 422, 201]
    assert_issue(entries[1]["response"]["outcome"], "structure", "Bundle.entry[1].resource.foo")
    assert "resource" not in entries[1]
    assert len(await search_ids(client, "Patient", {})) == 2
    assert entries[0]["response"]["location"].startswith(f"Patient/{entries[0]['resource']['id']}/_history/1")


async def test_entries_fail_with_their_own_status(client):
    p = await create(client, patient())
    await create(client, observation(f"Patient/{p['id']}"))

    entries = await run(
        client,
        request("GET", "Patient/ghost"),
        request("PUT", f"Patient/{p['id']}", {**p, "gender": "male"}, ifMatch='W/"9"'),
        request("DELETE", f"Patient/{p['id']}"),
        request("POST", "Unicorn", {"resourceType": "Unicorn"}),
        request("GET", f"Patient/{p['id']}"),
    )

    assert [status(e) for e in entries] == [404, 412, 409, 404, 200]
    for e in entries[:4]:
        assert_issue(e["response"]["outcome"])
    assert entries[4]["resource"]["meta"]["versionId"] == "1"


async def test_get_entries_read_vread_and_search(client):
    p = await create(client, patient(mrn="g1"))
    await client.put(f"/Patient/{p['id']}", json={**p, "gender": "female"},
                     headers={"Content-Type": "application/fhir+json"})

    entries = await run(
        client,
        request("GET", f"Patient/{p['id']}"),
        request("GET", f"Patient/{p['id']}/_history/1"),
        request("GET", f"Patient?identifier={SYS}|g1"),
        request("GET", f"Patient/{p['id']}/_history/7"),
    )

    assert [status(e) for e in entries] == [200, 200, 200, 404]
    assert entries[0]["resource"]["gender"] == "female"
    assert entries[0]["response"]["etag"] == 'W/"2"'
    assert "gender" not in entries[1]["resource"]
    assert entries[1]["response"]["etag"] == 'W/"1"'
    searchset = entries[2]["resource"]
    assert searchset["type"] == "searchset"
    assert [e["resource"]["id"] for e in searchset["entry"]] == [p["id"]]


async def test_entries_are_processed_independently_in_order(client):
    entries = await run(
        client,
        request("PUT", "Patient/b-1", patient(id="b-1")),
        request("GET", "Patient/b-1"),
        request("DELETE", "Patient/b-1"),
        request("GET", "Patient/b-1"),
    )

    assert [status(e) for e in entries] == [201, 200, 204, 410]


async def test_conditional_create_entry(client):
    existing = await create(client, patient(mrn="c1"))

    entries = await run(
        client,
        request("POST", "Patient", patient(mrn="c1"), ifNoneExist=f"identifier={SYS}|c1"),
        request("POST", "Patient", patient(mrn="c2"), ifNoneExist=f"identifier={SYS}|c2"),
    )

    assert [status(e) for e in entries] == [200, 201]
    assert entries[0]["resource"]["id"] == existing["id"]


async def test_urn_uuid_references_between_entries_are_refused(client):
    entries = await run(
        client,
        {**request("POST", "Patient", patient()), "fullUrl": "urn:uuid:5f0c8b4e-2c4f-4a1e-9a43-2b1f0f0e3a11"},
        request("POST", "Observation", observation("urn:uuid:5f0c8b4e-2c4f-4a1e-9a43-2b1f0f0e3a11")),
    )

    assert [status(e) for e in entries] == [201, 400]
    assert_issue(entries[1]["response"]["outcome"], "invalid", "Bundle.entry[1]")


async def test_patch_entry_with_fhirpath_patch(client):
    p = await create(client, patient())
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "other"},
    ]}]}

    entries = await run(client, request("PATCH", f"Patient/{p['id']}", params))

    assert [status(e) for e in entries] == [200]
    assert (await read_json(client, f"/Patient/{p['id']}"))["gender"] == "other"


async def test_malformed_entry_gets_400(client):
    entries = await run(client, {"resource": patient()}, request("FETCH", "Patient"), request("POST", "Patient"))

    assert [status(e) for e in entries] == [400, 400, 400]
    assert_issue(entries[0]["response"]["outcome"], "invalid", "Bundle.entry[0].request")
    assert_issue(entries[1]["response"]["outcome"], "invalid", "Bundle.entry[1].request.method")
    assert_issue(entries[2]["response"]["outcome"], "invalid", "Bundle.entry[2].resource")
    assert await writes_so_far(client) == 0


async def test_get_entry_with_an_impossible_version_is_404(client):
    p = await create(client, patient())

    entries = await run(client, request("GET", f"Patient/{p['id']}/_history/99999999999999999999999"))

    assert [status(e) for e in entries] == [404]
