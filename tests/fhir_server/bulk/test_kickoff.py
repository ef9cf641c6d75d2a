"""Kick-off: Prefer respond-async, parameter checks, access (403), the CapabilityStatement."""

from __future__ import annotations

import pytest

from tests.fhir_server.bulk.conftest import ASYNC, kickoff
from tests.tokens import auth


async def test_kickoff_without_prefer_respond_async_is_400(client):
    r = await client.get("$export")
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Prefer"]


async def test_kickoff_answers_202_with_a_status_url(client):
    r = await client.get("$export?_type=Patient", headers=ASYNC)
    assert r.status_code == 202
    assert r.headers["content-location"].startswith("http://testserver/fhir/bulk-status/")


@pytest.mark.parametrize("query, expression", [
    ("_type=Nonsense", "_type"),
    ("_outputFormat=text/csv", "_outputFormat"),
    ("_since=yesterday", "_since"),
    ("_since=2024-01-01T00:00:00", "_since"),  # no time zone
    ("_typeFilter=Observation%3Fnonsense%3D1", "nonsense"),
    ("_typeFilter=Observation", "_typeFilter"),
])
async def test_kickoff_with_a_bad_parameter_is_400(client, query, expression):
    r = await client.get(f"$export?{query}", headers=ASYNC)
    assert r.status_code == 400, r.text
    assert expression in r.json()["issue"][0].get("expression", [""])[0]


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
async def test_kickoff_accepts_the_ndjson_output_formats(client, fmt):
    await kickoff(client, _type="Patient", _outputFormat=fmt)


async def test_unsupported_parameter_is_400_under_strict_handling_and_ignored_otherwise(client):
    r = await client.get("$export?allowPartialManifests=true", headers={"Prefer": "respond-async, handling=strict"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["allowPartialManifests"]
    await kickoff(client, _type="Patient", allowPartialManifests="true")


@pytest.mark.req("NAT-1")
@pytest.mark.parametrize("path", ["$export", "Patient/$export"])
async def test_patient_scoped_token_is_refused(app, client, path):
    headers = {**ASYNC, **auth(app, "patient/*.rs launch/patient", patient="p1")}
    r = await client.get(path, headers=headers)
    assert r.status_code == 403
    assert r.json()["issue"][0]["code"] == "forbidden"


@pytest.mark.req("NAT-1")
async def test_system_export_without_a_system_read_grant_is_refused(app, client):
    for scope in ("user/*.rs", "system/Observation.c", "system/Patient.rs"):
        r = await client.get("$export?_type=Patient,Observation", headers={**ASYNC, **auth(app, scope)})
        assert r.status_code == 403, (scope, r.text)


async def test_system_export_with_a_read_grant_on_some_types_exports_those(app, client):
    url = await kickoff(client, headers=auth(app, "system/Patient.rs", client_id="registry", sub="registry"))
    r = await client.get(url, headers=auth(app, "system/Patient.rs", client_id="registry", sub="registry"))
    assert r.status_code in (200, 202)


async def test_patient_export_of_a_type_outside_the_compartment_is_400(client):
    r = await client.get("Patient/$export?_type=Organization", headers=ASYNC)
    assert r.status_code == 400


async def test_group_export_of_an_unknown_group_is_404(client):
    r = await client.get("Group/nope/$export", headers=ASYNC)
    assert r.status_code == 404


async def test_capability_statement_lists_the_export_operations(client):
    ops = {o["name"] for o in (await client.get("metadata")).json()["rest"][0]["operation"]}
    assert {"export", "patient-export", "group-export"} <= ops


@pytest.mark.parametrize("handling", ["", ", handling=lenient"])
async def test_organize_output_by_is_refused_with_400_naming_it(client, handling):
    r = await client.get("$export?organizeOutputBy=Patient", headers={"Prefer": f"respond-async{handling}"})
    assert r.status_code == 400
    body = r.json()["issue"][0]
    assert body["expression"] == ["organizeOutputBy"] and "3.0" in body["diagnostics"]
