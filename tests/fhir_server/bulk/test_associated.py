"""``includeAssociatedData``: the Provenance resources of the exported resources (NAT-1)."""

from __future__ import annotations

import pytest

from tests.fhir_server.bulk.conftest import ASYNC, download, kickoff, observation, patient, put_all, wait
from tests.tokens import auth

pytestmark = pytest.mark.req("NAT-1")

HEART, TEMP = "8867-4", "8310-5"
ONLY_HEART = f"Observation?code=http://loinc.org|{HEART}"


def provenance(id: str, recorded: str, *targets: str) -> dict:
    return {"resourceType": "Provenance", "id": id, "recorded": recorded,
            "target": [{"reference": t} for t in targets], "agent": [{"who": {"reference": "Practitioner/dr"}}]}


async def seed(client) -> None:
    await put_all(client, patient("p1"), observation("heart", "p1", code=HEART), observation("temp", "p1", code=TEMP),
                  {"resourceType": "Organization", "id": "org", "name": "Clinic"},
                  provenance("old", "2024-01-01T10:00:00+03:00", "Observation/heart"),
                  provenance("new", "2024-02-01T10:00:00+03:00", "Observation/heart", "Organization/org"),
                  provenance("of-temp", "2024-03-01T10:00:00Z", "Observation/temp"),
                  provenance("of-org", "2024-03-01T10:00:00Z", "Organization/org"),
                  provenance("versioned", "2023-12-01T10:00:00Z", "http://testserver/fhir/Patient/p1/_history/1"),
                  provenance("elsewhere", "2024-05-01T10:00:00Z", "http://example.org/fhir/Observation/heart"))


async def test_relevant_provenance_resources_are_those_targeting_exported_resources(client):
    await seed(client)
    manifest = await wait(client, await kickoff(client, _type="Observation,Patient", _typeFilter=ONLY_HEART,
                                                includeAssociatedData="RelevantProvenanceResources"))
    provenance_files = [o for o in manifest["output"] if o["type"] == "Provenance"]
    assert provenance_files and all("AssociatedProvenance-" in o["url"] for o in provenance_files)
    got = await download(client, manifest)
    assert sorted(r["id"] for r in got["Observation"]) == ["heart"]
    assert sorted(r["id"] for r in got["Provenance"]) == ["new", "old", "versioned"]


async def test_latest_provenance_resources_is_the_most_recent_per_exported_resource(client):
    await seed(client)
    got = await download(client, await wait(client, await kickoff(
        client, _type="Observation,Patient", _typeFilter=ONLY_HEART, includeAssociatedData="LatestProvenanceResources")))
    assert sorted(r["id"] for r in got["Provenance"]) == ["new", "versioned"]


async def test_provenance_exported_anyway_is_not_repeated(client):
    await seed(client)
    got = await download(client, await wait(client, await kickoff(
        client, _type="Organization,Provenance", includeAssociatedData="RelevantProvenanceResources")))
    ids = [r["id"] for r in got["Provenance"]]
    assert sorted(ids) == ["elsewhere", "new", "of-org", "of-temp", "old", "versioned"]


async def test_associated_provenance_of_a_patient_export(client):
    await seed(client)
    r = await client.post("Patient/$export", headers=ASYNC, json={"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "includeAssociatedData", "valueCode": "RelevantProvenanceResources"}]})
    assert r.status_code == 202, r.text
    got = await download(client, await wait(client, r.headers["content-location"]))
    assert sorted(r["id"] for r in got["Observation"]) == ["heart", "temp"]
    assert sorted(r["id"] for r in got["Provenance"]) == ["new", "of-temp", "old"]


async def test_associated_provenance_is_judged_as_of_transaction_time(app, client):
    await seed(client)
    svc = app.state.services
    await svc.bulk.stop()
    url = await kickoff(client, _type="Observation", _typeFilter=ONLY_HEART,
                        includeAssociatedData="RelevantProvenanceResources")
    await put_all(client, provenance("late", "2024-04-01T10:00:00Z", "Observation/heart"),
                  observation("heart", "p1", code=TEMP))
    await svc.bulk.start()
    got = await download(client, await wait(client, url))
    assert sorted(r["id"] for r in got["Provenance"]) == ["new", "old"]


@pytest.mark.parametrize("value", ["_custom", "LatestProvenanceResources,Nonsense", ""])
async def test_an_unsupported_include_associated_data_value_is_400(client, value):
    r = await client.get(f"$export?includeAssociatedData={value}", headers=ASYNC)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["includeAssociatedData"]
    assert "LatestProvenanceResources" in r.json()["issue"][0]["diagnostics"]


async def test_include_associated_data_needs_a_provenance_grant(app, client):
    headers = {**ASYNC, **auth(app, "system/Observation.rs", client_id="registry", sub="registry")}
    r = await client.get("$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources", headers=headers)
    assert r.status_code == 403, r.text
