"""patch: PATCH [base]/[type]/[id] with JSON Patch or FHIRPath Patch (http://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

import httpx
import orjson

from tests.fhir_server.interactions.conftest import (
    SYS, assert_outcome, create, delete, patient, read_json, search_ids, writes_so_far,
)

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def json_patch(client, url: str, ops: list, headers: dict | None = None) -> httpx.Response:
    return await client.patch(url, content=orjson.dumps(ops), headers={**JSON_PATCH, **(headers or {})})


def operation(type: str, path: str, **parts) -> dict:
    """One FHIRPath Patch operation: parts given as name=value, values as (valueX, value)."""
    out = [{"name": "type", "valueCode": type}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "name":
            out.append({"name": "name", "valueString": value})
        else:
            key, v = value
            out.append({"name": "value", key: v})
    return {"name": "operation", "part": out}


async def fhirpath_patch(client, url: str, *operations: dict, headers: dict | None = None) -> httpx.Response:
    params = {"resourceType": "Parameters", "parameter": list(operations)}
    return await client.patch(url, content=orjson.dumps(params), headers={**FHIR_JSON, **(headers or {})})


async def test_json_patch_makes_version_2(client):
    created = await create(client, patient(mrn="p1"))
    url = f"/Patient/{created['id']}"

    r = await json_patch(client, url, [{"op": "replace", "path": "/birthDate", "value": "1980-02-03"},
                                       {"op": "add", "path": "/gender", "value": "female"}])

    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    body = r.json()
    assert body["meta"]["versionId"] == "2"
    assert body["birthDate"] == "1980-02-03"
    assert body["gender"] == "female"
    assert body["identifier"] == created["identifier"]
    assert await read_json(client, url) == body


async def test_json_patch_updates_the_search_index(client):
    created = await create(client, patient(mrn="before"))

    r = await json_patch(client, f"/Patient/{created['id']}",
                         [{"op": "replace", "path": "/identifier/0/value", "value": "after"}])

    assert r.status_code == 200
    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|after"}) == [created["id"]]
    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|before"}) == []


async def test_fhirpath_patch_replace(client):
    created = await create(client, patient())

    r = await fhirpath_patch(client, f"/Patient/{created['id']}",
                             operation("replace", "Patient.birthDate", value=("valueDate", "1930-01-01")))

    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1930-01-01"
    assert r.json()["meta"]["versionId"] == "2"


async def test_fhirpath_patch_add(client):
    created = await create(client, patient())

    r = await fhirpath_patch(client, f"/Patient/{created['id']}",
                             operation("add", "Patient", name="gender", value=("valueCode", "male")))

    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male"


async def test_fhirpath_patch_delete(client):
    created = await create(client, patient())

    r = await fhirpath_patch(client, f"/Patient/{created['id']}", operation("delete", "Patient.birthDate"))

    assert r.status_code == 200, r.text
    assert "birthDate" not in r.json()
    assert "birthDate" not in await read_json(client, f"/Patient/{created['id']}")


async def test_fhirpath_patch_body_that_is_not_parameters_is_400(client):
    created = await create(client, patient())

    r = await client.patch(f"/Patient/{created['id']}", json=patient(), headers=FHIR_JSON)

    assert_outcome(r, 400, "invalid")
    assert await writes_so_far(client) == 1


async def test_if_match_current_version_patches(client):
    created = await create(client, patient())

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "add", "path": "/gender", "value": "male"}],
                         {"If-Match": 'W/"1"'})

    assert r.status_code == 200


async def test_if_match_stale_version_is_412_and_writes_nothing(client):
    created = await create(client, patient())
    await json_patch(client, f"/Patient/{created['id']}", [{"op": "add", "path": "/gender", "value": "male"}])

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "remove", "path": "/gender"}],
                         {"If-Match": 'W/"1"'})

    assert_outcome(r, 412, None, "If-Match")
    assert (await read_json(client, f"/Patient/{created['id']}"))["gender"] == "male"


async def test_failing_test_operation_is_422_and_writes_nothing(client):
    created = await create(client, patient())

    r = await json_patch(client, f"/Patient/{created['id']}", [
        {"op": "test", "path": "/birthDate", "value": "1999-09-09"},
        {"op": "replace", "path": "/birthDate", "value": "2000-01-01"},
    ])

    assert_outcome(r, 422, "processing", "Patch[0]")
    assert await writes_so_far(client) == 1


async def test_patch_changing_the_id_is_refused(client):
    created = await create(client, patient())
    before = await writes_so_far(client)

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "replace", "path": "/id", "value": "other"}])

    assert_outcome(r, 422, None, "Patient.id")
    assert await writes_so_far(client) == before
    assert (await client.get("/Patient/other")).status_code == 404


async def test_patch_changing_the_resource_type_is_refused(client):
    created = await create(client, patient())

    r = await json_patch(client, f"/Patient/{created['id']}",
                         [{"op": "replace", "path": "/resourceType", "value": "Group"}])

    assert 400 <= r.status_code < 500
    assert await writes_so_far(client) == 1


async def test_patch_of_a_deleted_resource_is_410(client):
    created = await create(client, patient())
    await delete(client, f"/Patient/{created['id']}")
    before = await writes_so_far(client)

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "add", "path": "/gender", "value": "male"}])

    assert_outcome(r, 410, "deleted")
    assert await writes_so_far(client) == before


async def test_patch_of_an_unknown_resource_is_404(client):
    r = await json_patch(client, "/Patient/ghost", [{"op": "add", "path": "/gender", "value": "male"}])

    assert_outcome(r, 404, "not-found")
    assert await writes_so_far(client) == 0


async def test_patch_producing_an_invalid_resource_is_422_and_writes_nothing(client):
    created = await create(client, patient())

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "add", "path": "/gender", "value": "robot"}])

    assert_outcome(r, 422, "code-invalid", "Patient.gender")
    assert await writes_so_far(client) == 1
    assert "gender" not in await read_json(client, f"/Patient/{created['id']}")


async def test_patch_adding_an_unknown_element_is_422(client):
    created = await create(client, patient())

    r = await json_patch(client, f"/Patient/{created['id']}", [{"op": "add", "path": "/foo", "value": 1}])

    assert_outcome(r, 422, "structure", "Patient.foo")
    assert await writes_so_far(client) == 1


async def test_patch_with_unsupported_content_type_is_415(client):
    created = await create(client, patient())

    r = await client.patch(f"/Patient/{created['id']}", content=b"[]", headers={"Content-Type": "text/plain"})

    assert_outcome(r, 415, "not-supported")


async def test_conditional_patch_patches_the_single_match(client):
    created = await create(client, patient(mrn="cp"))

    r = await json_patch(client, f"/Patient?identifier={SYS}|cp", [{"op": "add", "path": "/gender", "value": "male"}])

    assert r.status_code == 200
    assert r.json()["id"] == created["id"]
    assert r.json()["gender"] == "male"


async def test_conditional_patch_with_multiple_matches_is_412(client):
    await create(client, patient(mrn="cp"))
    await create(client, patient(mrn="cp"))

    r = await json_patch(client, f"/Patient?identifier={SYS}|cp", [{"op": "add", "path": "/gender", "value": "male"}])

    assert_outcome(r, 412, "multiple-matches")
    assert await writes_so_far(client) == 2
