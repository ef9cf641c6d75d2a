"""Export content: every file downloads, and the content equals a search of the same data.

Registries receive data by bulk export (NAT-1).
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.fhir_server.bulk.conftest import (ASYNC, by_id, download, kickoff, observation, patient, put_all,
                                             search_all, wait)
from tests.tokens import auth

pytestmark = pytest.mark.req("NAT-1")


async def seed(client, patients: int = 12, observations: int = 60) -> None:
    await put_all(client, *[patient(f"p{i}", gender="male" if i % 2 else "female") for i in range(patients)],
                  *[observation(f"o{i}", f"p{i % patients}", code="8867-4" if i % 3 else "8310-5",
                                valueQuantity={"value": i}) for i in range(observations)])
    await put_all(client, {"resourceType": "Organization", "id": "org1", "name": "Clinic"})


async def test_system_export_manifest_and_files_equal_a_search(client):
    await seed(client)
    url = await kickoff(client, _type="Patient,Observation,Organization")
    manifest = await wait(client, url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("$export?_type=Patient%2CObservation%2COrganization")
    assert manifest["transactionTime"].endswith("Z") and manifest["error"] == []
    assert len([o for o in manifest["output"] if o["type"] == "Observation"]) > 1  # split by size (4000 bytes)
    got = await download(client, manifest)
    for type in ("Patient", "Observation", "Organization"):
        assert by_id(got[type]) == by_id(await search_all(client, type))


async def test_export_without_type_exports_every_granted_type_but_not_audit_events(client):
    await seed(client, 2, 3)
    got = await download(client, await wait(client, await kickoff(client)))
    assert set(got) == {"Patient", "Observation", "Organization"}


async def test_since_exports_only_later_changes(client):
    await seed(client, 4, 8)
    await asyncio.sleep(0.01)
    first = await wait(client, await kickoff(client, _type="Patient,Observation"))
    await put_all(client, patient("p1", gender="other"), observation("o9", "p2"))
    got = await download(client, await wait(client, await kickoff(client, _type="Patient,Observation",
                                                                   _since=first["transactionTime"])))
    assert {t: sorted(r["id"] for r in rs) for t, rs in got.items()} == {"Patient": ["p1"], "Observation": ["o9"]}
    assert got["Patient"][0]["gender"] == "other"


async def test_until_leaves_out_later_changes(client):
    await seed(client, 3, 0)
    cut = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1)) + "Z"
    await asyncio.sleep(1.1)
    await put_all(client, patient("late"))
    got = await download(client, await wait(client, await kickoff(client, _type="Patient", _until=cut)))
    assert sorted(r["id"] for r in got["Patient"]) == ["p0", "p1", "p2"]


async def test_type_filter_exports_only_matches_and_ors_several_filters(client):
    await seed(client)
    url = await kickoff(client, _type="Observation,Patient", _typeFilter="Observation?code=http://loinc.org|8310-5")
    got = await download(client, await wait(client, url))
    assert by_id(got["Observation"]) == by_id(await search_all(client, "Observation", code="http://loinc.org|8310-5"))
    assert len(got["Patient"]) == 12
    url = await kickoff(client, _type="Patient",
                        _typeFilter="Patient?gender=male,Patient?_id=p0,p1,p2")
    got = await download(client, await wait(client, url))
    assert sorted(r["id"] for r in got["Patient"]) == sorted(["p0", "p2", *(f"p{i}" for i in range(1, 12, 2))])


async def test_elements_keeps_the_named_elements_and_marks_them_subsetted(client):
    await seed(client, 2, 2)
    got = await download(client, await wait(client, await kickoff(client, _type="Patient,Observation",
                                                                   _elements="Patient.gender,status")))
    assert set(got["Patient"][0]) == {"resourceType", "id", "meta", "gender"}
    assert got["Patient"][0]["meta"]["tag"][-1]["code"] == "SUBSETTED"
    assert {"status", "code"} <= set(got["Observation"][0]) and "valueQuantity" not in got["Observation"][0]


async def test_post_kickoff_takes_a_parameters_body(client):
    await seed(client, 3, 6)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}}]}
    r = await client.post("Patient/$export", json=body, headers=ASYNC)
    assert r.status_code == 202, r.text
    got = await download(client, await wait(client, r.headers["content-location"]))
    assert by_id(got["Observation"]) == by_id(await search_all(client, "Observation", subject="Patient/p1"))


async def test_patient_export_covers_the_compartment_types(client):
    await seed(client, 3, 6)
    got = await download(client, await wait(client, await kickoff(client, "Patient/$export")))
    assert set(got) == {"Patient", "Observation"}  # Organization is in no patient compartment


async def test_group_export_of_a_static_member_list(client):
    await seed(client, 6, 30)
    await put_all(client, {"resourceType": "Group", "id": "g", "type": "person", "actual": True, "member": [
        {"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}},
        {"entity": {"reference": "Patient/p3"}, "inactive": True}]})
    got = await download(client, await wait(client, await kickoff(client, "Group/g/$export")))
    assert sorted(r["id"] for r in got["Patient"]) == ["p1", "p2"]
    assert by_id(got["Observation"]) == by_id(await search_all(client, "Observation", subject="Patient/p1,Patient/p2"))


async def test_group_export_of_the_patients_of_an_organisation(client):
    await seed(client, 2, 4)
    await put_all(client, patient("m1", managingOrganization={"reference": "Organization/org1"}),
                  patient("m2", managingOrganization={"reference": "Organization/org1"}),
                  observation("om1", "m1"),
                  {"resourceType": "Group", "id": "org", "type": "person", "actual": False, "characteristic": [
                      {"code": {"coding": [{"system": "https://telemed-fhir.org/ig/CodeSystem/group-characteristic",
                                            "code": "managing-organization"}]},
                       "valueReference": {"reference": "Organization/org1"}, "exclude": False}]})
    got = await download(client, await wait(client, await kickoff(client, "Group/org/$export")))
    assert sorted(r["id"] for r in got["Patient"]) == ["m1", "m2"]
    assert [r["id"] for r in got["Observation"]] == ["om1"]


async def test_group_export_keeps_within_a_granular_user_scope_like_search(app, client):
    await seed(client, 3, 6)
    await put_all(client, observation("prelim", "p1", status="preliminary"),
                  {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                   "member": [{"entity": {"reference": "Patient/p1"}}]})
    who = auth(app, "user/Group.rs user/Patient.rs user/Observation.rs?status=final", client_id="c2", sub="dr",
               fhirUser="Practitioner/dr")
    got = await download(client, await wait(client, await kickoff(client, "Group/g/$export", headers=who,
                                                                  _type="Observation"), who), who)
    assert "prelim" not in by_id(got["Observation"]) and by_id(got["Observation"])
    assert all(r["status"] == "final" for r in got["Observation"])


async def test_every_job_and_download_is_audited(app, client):
    await seed(client, 1, 1)
    manifest = await wait(client, await kickoff(client, _type="Patient"))
    await download(client, manifest)
    await app.state.services.auditor.flush()
    events = await search_all(client, "AuditEvent")
    described = [e.get("outcomeDesc", "") for e in events]
    assert any("kicked off" in d for d in described) and any("downloaded" in d for d in described)


async def test_output_lines_are_the_stored_resources(client):
    await seed(client, 1, 0)
    got = await download(client, await wait(client, await kickoff(client, _type="Patient")))
    stored = (await client.get("Patient/p0")).content
    assert got["Patient"][0] == orjson.loads(stored)


async def test_export_of_one_patient(client):
    await seed(client, 3, 9)
    got = await download(client, await wait(client, await kickoff(client, "Patient/p1/$export")))
    assert [r["id"] for r in got["Patient"]] == ["p1"]
    assert by_id(got["Observation"]) == by_id(await search_all(client, "Observation", subject="Patient/p1"))
    r = await client.get("Patient/nobody/$export", headers=ASYNC)
    assert r.status_code == 404 and r.json()["issue"][0]["expression"] == ["Patient"]
    r = await client.get("Patient/p1/$export?patient=Patient/p2", headers=ASYNC)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["patient"]
