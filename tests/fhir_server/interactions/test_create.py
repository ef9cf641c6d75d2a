"""create: POST [base]/[type], conditional create with If-None-Exist (http://hl7.org/fhir/R4/http.html#create)."""

from __future__ import annotations

import asyncio

from tests.fhir_server.interactions.conftest import (
    JSON_HEADERS, SYS, assert_outcome, create, observation, patient, post, read_json, search_ids, without_meta,
    writes_so_far,
)


def if_none_exist(mrn: str) -> dict:
    return {"If-None-Exist": f"identifier={SYS}|{mrn}"}


async def test_returns_201_with_location_etag_and_the_stored_resource(client):
    r = await post(client, patient())

    assert r.status_code == 201
    body = r.json()
    id = body["id"]
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{id}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers
    assert body["meta"]["versionId"] == "1"
    assert without_meta(body) == patient()
    assert await read_json(client, f"/Patient/{id}") == body


async def test_assigns_a_new_id_and_ignores_the_one_in_the_body(client):
    first = await post(client, patient(id="chosen-by-client"))
    second = await post(client, patient(id="chosen-by-client"))

    ids = {first.json()["id"], second.json()["id"]}
    assert len(ids) == 2
    assert "chosen-by-client" not in ids
    r = await client.get("/Patient/chosen-by-client")
    assert r.status_code == 404


async def test_keeps_client_meta_but_sets_version_and_last_updated(client):
    meta = {"versionId": "77", "lastUpdated": "2001-01-01T00:00:00Z", "profile": ["http://example.org/p"]}

    body = await create(client, patient(meta=meta))

    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != meta["lastUpdated"]
    assert body["meta"]["profile"] == meta["profile"]


async def test_returns_404_for_unknown_resource_type(client):
    r = await client.post("/Unicorn", json={"resourceType": "Unicorn"}, headers=JSON_HEADERS)

    assert_outcome(r, 404, "not-found")


async def test_body_of_another_type_is_400(client):
    r = await client.post("/Observation", json=patient(), headers={"Content-Type": "application/fhir+json"})

    assert_outcome(r, 400, "invalid", "resourceType")


async def test_conditional_create_without_match_creates(client):
    await create(client, patient(mrn="other"))

    r = await post(client, patient(mrn="1"), if_none_exist("1"))

    assert r.status_code == 201
    assert "location" in r.headers
    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|1"}) == [r.json()["id"]]


async def test_conditional_create_with_one_match_returns_it_and_writes_nothing(client):
    existing = await create(client, patient("Existing", mrn="1"))
    before = await writes_so_far(client)

    r = await post(client, patient("New", mrn="1"), if_none_exist("1"))

    assert r.status_code == 200
    assert r.json() == existing
    assert r.headers["etag"] == 'W/"1"'
    assert await writes_so_far(client) == before
    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|1"}) == [existing["id"]]


async def test_conditional_create_with_two_matches_is_412(client):
    await create(client, patient(mrn="1"))
    await create(client, patient(mrn="1"))
    before = await writes_so_far(client)

    r = await post(client, patient(mrn="1"), if_none_exist("1"))

    assert_outcome(r, 412, "multiple-matches", "If-None-Exist")
    assert await writes_so_far(client) == before


async def test_conditional_create_with_unknown_parameter_is_400(client):
    r = await post(client, patient(), {"If-None-Exist": "no-such-param=1"})

    assert_outcome(r, 400, "invalid", "no-such-param")
    assert await writes_so_far(client) == 0


async def test_concurrent_identical_conditional_creates_make_one_resource(client):
    responses = await asyncio.gather(*(post(client, patient(mrn="race"), if_none_exist("race")) for _ in range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    ids = await search_ids(client, "Patient", {"identifier": f"{SYS}|race"})
    assert len(ids) == 1
    assert {r.json()["id"] for r in responses} == set(ids)


async def test_create_indexes_the_resource_for_search(client):
    p = await create(client, patient(mrn="searchable"))
    o = await create(client, observation(f"Patient/{p['id']}"))

    assert await search_ids(client, "Observation", {"subject": f"Patient/{p['id']}"}) == [o["id"]]


async def test_if_none_exist_with_only_result_parameters_is_400(client):
    await create(client, patient())

    r = await post(client, patient(), {"If-None-Exist": "_count=1"})

    assert_outcome(r, 400, "invalid", "If-None-Exist")
    assert await writes_so_far(client) == 1
