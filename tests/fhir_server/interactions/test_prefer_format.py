"""Prefer: return=... and content negotiation (http://hl7.org/fhir/R4/http.html#ops, #mime-type)."""

from __future__ import annotations

import orjson
import pytest

from tests.fhir_server.interactions.conftest import (
    assert_issue, assert_outcome, create, patient, post, put, read_json, writes_so_far,
)


async def test_return_minimal_on_create_is_an_empty_body_with_headers(client):
    r = await post(client, patient(), {"Prefer": "return=minimal"})

    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers
    location = r.headers["location"]
    assert "/Patient/" in location and location.endswith("/_history/1")
    assert (await read_json(client, location.split("/fhir", 1)[1]))["name"] == patient()["name"]


async def test_return_minimal_on_update_is_an_empty_body_with_headers(client):
    created = await create(client, patient())

    r = await put(client, f"/Patient/{created['id']}", created, {"Prefer": "return=minimal"})

    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["etag"] == 'W/"2"'


async def test_return_representation_is_the_default(client):
    r = await post(client, patient(), {"Prefer": "return=representation"})

    assert r.status_code == 201
    assert r.json()["resourceType"] == "Patient"


async def test_return_operation_outcome_answers_with_an_outcome(client):
    r = await post(client, patient(), {"Prefer": "return=OperationOutcome"})

    assert r.status_code == 201
    assert "location" in r.headers
    assert r.headers["etag"] == 'W/"1"'
    assert_issue(r.json(), "informational")
    assert await writes_so_far(client) == 1


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml"])
async def test_accept_xml_is_406(client, accept):
    created = await create(client, patient())

    r = await client.get(f"/Patient/{created['id']}", headers={"Accept": accept})

    assert_outcome(r, 406, "not-supported")


async def test_accept_xml_on_create_is_406_and_writes_nothing(client):
    r = await post(client, patient(), {"Accept": "application/fhir+xml"})

    assert_outcome(r, 406, "not-supported")
    assert await writes_so_far(client) == 0


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*",
                                    "application/fhir+xml;q=0.9, application/fhir+json"])
async def test_accept_json_is_served(client, accept):
    created = await create(client, patient())

    r = await client.get(f"/Patient/{created['id']}", headers={"Accept": accept})

    assert r.status_code == 200
    assert r.json()["id"] == created["id"]


async def test_format_parameter_overrides_accept(client):
    created = await create(client, patient())

    r = await client.get(f"/Patient/{created['id']}", params={"_format": "json"},
                         headers={"Accept": "application/fhir+xml"})

    assert r.status_code == 200


@pytest.mark.parametrize("url", ["/Patient", "/_history", "/metadata"])
async def test_format_xml_is_406_on_bundles_and_metadata(client, url):
    assert_outcome(await client.get(url, params={"_format": "xml"}), 406, "not-supported")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_accept_xml_on_other_writes_is_406_and_writes_nothing(client, method):
    created = await create(client, patient())
    bodies = {"PUT": (created, "application/fhir+json"), "PATCH": ([], "application/json-patch+json")}
    headers = {"Accept": "application/fhir+xml"}
    content = None
    if method in bodies:
        content = orjson.dumps(bodies[method][0])
        headers["Content-Type"] = bodies[method][1]

    r = await client.request(method, f"/Patient/{created['id']}", content=content, headers=headers)

    assert_outcome(r, 406, "not-supported")
    assert await writes_so_far(client) == 1


async def test_accept_xml_on_a_transaction_is_406_and_writes_nothing(client):
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]}

    r = await client.post("/", json=bundle, headers={"Content-Type": "application/fhir+json",
                                                      "Accept": "application/fhir+xml"})

    assert_outcome(r, 406, "not-supported")
    assert await writes_so_far(client) == 0


async def test_invalid_summary_on_create_is_400_and_writes_nothing(client):
    r = await client.post("/Patient", params={"_summary": "maybe"}, json=patient(),
                          headers={"Content-Type": "application/fhir+json"})

    assert_outcome(r, 400, "invalid", "_summary")
    assert await writes_so_far(client) == 0
