"""delete: DELETE [base]/[type]/[id] and conditional delete (http://hl7.org/fhir/R4/http.html#delete)."""

from __future__ import annotations

from tests.fhir_server.interactions.conftest import (
    SYS, assert_outcome, create, history_entries, observation, patient, search_ids, writes_so_far,
)


async def test_returns_204(client):
    created = await create(client, patient())

    r = await client.delete(f"/Patient/{created['id']}")

    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["etag"] == 'W/"2"'


async def test_read_after_delete_is_410(client):
    created = await create(client, patient())
    await client.delete(f"/Patient/{created['id']}")

    assert_outcome(await client.get(f"/Patient/{created['id']}"), 410, "deleted")


async def test_deleted_resource_no_longer_matches_searches(client):
    created = await create(client, patient(mrn="d1"))
    await client.delete(f"/Patient/{created['id']}")

    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|d1"}) == []
    assert await search_ids(client, "Patient", {"_id": created["id"]}) == []


async def test_history_keeps_every_version_including_the_deletion(client):
    created = await create(client, patient())
    id = created["id"]
    await client.put(f"/Patient/{id}", json=created, headers={"Content-Type": "application/fhir+json"})
    await client.delete(f"/Patient/{id}")

    entries = await history_entries(client, f"/Patient/{id}/_history")

    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries[0]


async def test_deleting_again_is_204_and_writes_nothing(client):
    created = await create(client, patient())
    await client.delete(f"/Patient/{created['id']}")

    r = await client.delete(f"/Patient/{created['id']}")

    assert r.status_code == 204
    assert await writes_so_far(client) == 2


async def test_deleting_an_unknown_resource_is_204(client):
    r = await client.delete("/Patient/never-existed")

    assert r.status_code == 204
    assert await writes_so_far(client) == 0


async def test_unknown_type_is_404(client):
    assert_outcome(await client.delete("/Unicorn/1"), 404, "not-found")


async def test_deleting_a_referenced_resource_is_409_naming_the_referrer(client):
    p = await create(client, patient())
    o = await create(client, observation(f"Patient/{p['id']}"))

    r = await client.delete(f"/Patient/{p['id']}")

    oo = assert_outcome(r, 409, "conflict", f"Patient/{p['id']}")
    assert any(f"Observation/{o['id']}" in i.get("expression", []) for i in oo["issue"]), oo
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 200
    assert await writes_so_far(client) == 2


async def test_cascade_delete_deletes_the_referrers_too(client):
    p = await create(client, patient())
    o = await create(client, observation(f"Patient/{p['id']}"))

    r = await client.delete(f"/Patient/{p['id']}", params={"_cascade": "delete"})

    assert r.status_code == 204
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 410
    assert (await client.get(f"/Observation/{o['id']}")).status_code == 410


async def test_cascade_with_another_value_is_400(client):
    p = await create(client, patient())

    r = await client.delete(f"/Patient/{p['id']}", params={"_cascade": "yes"})

    assert_outcome(r, 400, "invalid", "_cascade")
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 200


async def test_deleting_a_referrer_first_then_the_target_succeeds(client):
    p = await create(client, patient())
    o = await create(client, observation(f"Patient/{p['id']}"))

    assert (await client.delete(f"/Observation/{o['id']}")).status_code == 204
    assert (await client.delete(f"/Patient/{p['id']}")).status_code == 204


async def test_conditional_delete_with_one_match_deletes_it(client):
    keep = await create(client, patient(mrn="keep"))
    gone = await create(client, patient(mrn="gone"))

    r = await client.delete("/Patient", params={"identifier": f"{SYS}|gone"})

    assert r.status_code == 204
    assert (await client.get(f"/Patient/{gone['id']}")).status_code == 410
    assert (await client.get(f"/Patient/{keep['id']}")).status_code == 200


async def test_conditional_delete_with_multiple_matches_is_412(client):
    await create(client, patient(mrn="dup"))
    await create(client, patient(mrn="dup"))

    r = await client.delete("/Patient", params={"identifier": f"{SYS}|dup"})

    assert_outcome(r, 412, "multiple-matches")
    assert len(await search_ids(client, "Patient", {"identifier": f"{SYS}|dup"})) == 2
    assert await writes_so_far(client) == 2


async def test_conditional_delete_without_match_is_204(client):
    await create(client, patient(mrn="other"))

    r = await client.delete("/Patient", params={"identifier": f"{SYS}|none"})

    assert r.status_code == 204
    assert await writes_so_far(client) == 1


async def test_conditional_delete_without_criteria_is_400(client):
    await create(client, patient())

    r = await client.delete("/Patient")

    assert_outcome(r, 400, "invalid")
    assert await writes_so_far(client) == 1


async def test_prefer_operation_outcome_answers_with_an_outcome(client):
    created = await create(client, patient())

    r = await client.delete(f"/Patient/{created['id']}", headers={"Prefer": "return=OperationOutcome"})

    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_conditional_delete_with_only_result_parameters_is_400(client):
    p = await create(client, patient())

    for params in ({"_count": "1"}, {"_pretty": "true"}, {"_sort": "_id"}):
        r = await client.delete("/Patient", params=params)
        assert_outcome(r, 400, "invalid")
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 200


async def test_if_match_guards_delete(client):
    p = await create(client, patient())
    stale = await client.delete(f"/Patient/{p['id']}", headers={"If-Match": 'W/"7"'})
    assert_outcome(stale, 412, "conflict", "If-Match")
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 200
    ok = await client.delete(f"/Patient/{p['id']}", headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 204
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 410
