"""Our artifacts over HTTP: read, vread and search them (both stores), never change them."""

from __future__ import annotations

import pytest

from profiles import CANONICAL, artifacts
from tests.tokens import auth

SD = f"{CANONICAL}/StructureDefinition"


def ids(bundle: dict, type: str | None = None) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match" and (type is None or e["resource"]["resourceType"] == type)]


@pytest.mark.parametrize("path", ["StructureDefinition/ConsultTask", "StructureDefinition/TelemedRequest",
                                  "ValueSet/consultation-kind", "CodeSystem/form-of-care",
                                  "OperationDefinition/ServiceRequest-submit", "SearchParameter/compartment"])
async def test_each_artifact_is_read_by_its_id(client, path):
    r = await client.get(f"/{path}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert f"{body['resourceType']}/{body['id']}" == path
    assert body["meta"]["versionId"] == "1" and r.headers["etag"] == 'W/"1"'
    assert body == artifacts.catalog().by_key[tuple(path.split("/"))]
    assert (await client.get(f"/{path}/_history/1")).json() == body
    assert (await client.get(f"/{path}/_history/2")).status_code == 404


async def test_every_artifact_of_the_folder_is_served(client):
    for (type, id) in artifacts.catalog().by_key:
        assert (await client.get(f"/{type}/{id}")).status_code == 200, f"{type}/{id}"


async def test_search_by_url_and_by_name(client):
    r = await client.get("/StructureDefinition", params={"url": f"{SD}/ConsultTask"})
    assert r.status_code == 200, r.text
    assert ids(r.json()) == ["ConsultTask"] and r.json()["total"] == 1
    named = ids((await client.get("/StructureDefinition", params={"name": "consult"})).json())
    assert {"ConsultConclusion", "ConsultMessage", "ConsultProtocol", "ConsultTask"} <= set(named)
    assert "TelemedRequest" not in named and named == sorted(named)  # names starting with "consult", any case
    assert ids((await client.get("/StructureDefinition", params={"name:exact": "ConsultTask"})).json()) == [
        "ConsultTask"]
    assert ids((await client.get("/StructureDefinition", params={"type": "ServiceRequest"})).json()) == [
        "TelemedRequest"]
    below = (await client.get("/ValueSet", params={"url:below": f"{CANONICAL}/ValueSet/consultation"})).json()
    assert "consultation-kind" in ids(below) and "form-of-care" not in ids(below)
    assert ids((await client.get("/CodeSystem", params={"url": "http://example.org/none"})).json()) == []


async def test_search_lists_stored_resources_after_the_artifacts(client):
    mine = {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/ValueSet/mine", "name": "Mine"}
    assert (await client.post("/ValueSet", json=mine)).status_code == 201
    everything = (await client.get("/ValueSet", params={"status": "active"})).json()
    listed = ids(everything)
    assert listed[-1] != "consultation-kind" and "consultation-kind" in listed
    assert everything["total"] == len(listed) == len([k for k in artifacts.catalog().by_key if k[0] == "ValueSet"]) + 1
    assert ids((await client.get("/ValueSet", params={"name": "mine"})).json()) != []
    for counting in ({"_summary": "count"}, {"_count": "0"}):
        count = (await client.get("/ValueSet", params=counting)).json()
        assert count["total"] == len(listed) and "entry" not in count


async def test_a_search_the_artifacts_cannot_answer_lists_only_stored_resources(client):
    r = await client.get("/StructureDefinition", params={"date": "ge2000-01-01"})
    assert r.status_code == 200 and ids(r.json()) == []


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_an_artifact_cannot_be_changed_or_deleted(client, method):
    current = (await client.get("/StructureDefinition/ConsultTask")).json()
    body = {"PUT": current, "PATCH": [{"op": "replace", "path": "/status", "value": "retired"}], "DELETE": None}[method]
    headers = {"Content-Type": "application/json-patch+json"} if method == "PATCH" else {}
    r = await client.request(method, "/StructureDefinition/ConsultTask", json=body, headers=headers)
    assert r.status_code == 405, r.text
    assert r.json()["issue"][0]["expression"] == ["StructureDefinition/ConsultTask"]
    assert (await client.get("/StructureDefinition/ConsultTask")).json() == current


async def test_bundles_cannot_change_an_artifact_or_claim_our_canonical_base(client):
    current = (await client.get("/CodeSystem/form-of-care")).json()
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": current, "request": {"method": "PUT", "url": "CodeSystem/form-of-care"}}]}
    r = await client.post("", json=tx)
    assert r.status_code == 405, r.text
    fake = {"resourceType": "CodeSystem", "status": "active", "content": "complete",
            "url": f"{CANONICAL}/CodeSystem/form-of-care"}
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": fake, "request": {"method": "POST", "url": "CodeSystem"}}]})
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.url"]
    assert (await client.get("/CodeSystem/form-of-care")).json() == current


async def test_reading_artifacts_needs_a_scope_for_their_type(app, client):
    r = await client.get("/StructureDefinition/ConsultTask", headers=auth(app, "system/Patient.rs"))
    assert r.status_code == 403, r.text


async def test_the_capability_statement_names_the_profiles(client):
    rest = (await client.get("/metadata")).json()["rest"][0]
    supported = {r["type"]: r.get("supportedProfile", []) for r in rest["resource"]}
    assert supported["ServiceRequest"] == [f"{SD}/TelemedRequest"]
    assert supported["Task"] == [f"{SD}/ConsultTask"]
    assert supported["DiagnosticReport"] == [f"{SD}/ConsultConclusion"]
    assert supported["Composition"] == [f"{SD}/ConsultProtocol"]
    assert supported["Communication"] == [f"{SD}/ConsultMessage"]


async def test_serving_writes_nothing_into_the_store(client):
    await client.get("/StructureDefinition/ConsultTask")
    history = (await client.get("/_history")).json()
    assert [e for e in history.get("entry", []) if e["fullUrl"].split("/fhir/")[1].split("/")[0] in artifacts.TYPES] == []

