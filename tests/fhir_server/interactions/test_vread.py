"""vread: GET [base]/[type]/[id]/_history/[vid] (http://hl7.org/fhir/R4/http.html#vread)."""

from __future__ import annotations

from tests.fhir_server.interactions.conftest import assert_outcome, create, delete, patient, update


async def _three_versions(client) -> str:
    v1 = await create(client, patient("One"))
    await update(client, {**v1, "name": [{"family": "Two"}]})
    await update(client, {**v1, "name": [{"family": "Three"}]})
    return v1["id"]


async def test_returns_each_version_as_it_was_written(client):
    id = await _three_versions(client)

    for version, family in ((1, "One"), (2, "Two"), (3, "Three")):
        r = await client.get(f"/Patient/{id}/_history/{version}")
        assert r.status_code == 200
        assert r.headers["etag"] == f'W/"{version}"'
        assert "last-modified" in r.headers
        body = r.json()
        assert body["meta"]["versionId"] == str(version)
        assert body["name"][0]["family"] == family


async def test_returns_404_for_unknown_version(client):
    id = await _three_versions(client)

    for vid in ("4", "0", "abc"):
        r = await client.get(f"/Patient/{id}/_history/{vid}")
        assert_outcome(r, 404, "not-found")


async def test_returns_404_for_unknown_resource(client):
    r = await client.get("/Patient/nobody/_history/1")

    assert_outcome(r, 404, "not-found")


async def test_returns_404_for_unknown_resource_type(client):
    r = await client.get("/Unicorn/1/_history/1")

    assert_outcome(r, 404, "not-found")


async def test_returns_410_for_a_version_that_is_a_deletion(client):
    created = await create(client, patient())
    await delete(client, f"/Patient/{created['id']}")

    r = await client.get(f"/Patient/{created['id']}/_history/2")

    assert_outcome(r, 410, "deleted")
    assert r.headers["etag"] == 'W/"2"'


async def test_versions_before_a_deletion_stay_readable(client):
    created = await create(client, patient("Kept"))
    await delete(client, f"/Patient/{created['id']}")

    r = await client.get(f"/Patient/{created['id']}/_history/1")

    assert r.status_code == 200
    assert r.json()["name"][0]["family"] == "Kept"


async def test_version_ids_that_are_no_stored_number_are_404(client):
    created = await create(client, patient())

    for vid in ("99999999999999999999999", "\u00b2", "-1"):
        r = await client.get(f"/Patient/{created['id']}/_history/{vid}")
        assert_outcome(r, 404, "not-found")
