"""capabilities: GET [base]/metadata (http://hl7.org/fhir/R4/http.html#capabilities)."""

from __future__ import annotations

import pytest

from fhir_server.validation.structure import validate
from tests.fhir_server.interactions.conftest import assert_outcome

# R4 TypeRestfulInteraction / SystemRestfulInteraction codes.
TYPE_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"}
SYSTEM_INTERACTIONS = {"transaction", "batch", "search-system", "history-system"}
# A batch is POSTed to the same endpoint as a transaction; Bundle.type tells them apart.
ROUTE_OF = {"batch": "transaction"}
SAMPLE_VALUE = {"token": "x", "string": "x", "date": "2024", "reference": "Patient/x", "number": "1",
                "quantity": "1", "uri": "http://example.org/x", "special": "some-list-id", "composite": "x$2024"}


@pytest.fixture
async def statement(client) -> dict:
    r = await client.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def resource(statement: dict, type: str) -> dict:
    [rest] = statement["rest"]
    [res] = [r for r in rest["resource"] if r["type"] == type]
    return res


def route_names(app) -> set[str]:
    return {route.name for route in app.routes}


async def test_is_an_r4_capability_statement(statement):
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert statement["status"] == "active"
    assert "application/fhir+json" in statement["format"]
    assert not any("xml" in f for f in statement["format"])
    assert statement["rest"][0]["mode"] == "server"


async def test_is_valid_fhir_r4(statement):
    validate(statement)


async def test_lists_patient_with_its_interactions(statement):
    patient = resource(statement, "Patient")

    codes = {i["code"] for i in patient["interaction"]}

    assert {"read", "vread", "create", "update", "patch", "delete", "history-instance", "history-type",
            "search-type"} <= codes


async def test_lists_patient_identifier_search_parameter(statement):
    params = {p["name"]: p for p in resource(statement, "Patient")["searchParam"]}

    assert params["identifier"]["type"] == "token"
    assert params["identifier"]["definition"] == "http://hl7.org/fhir/SearchParameter/Patient-identifier"
    assert {"name", "birthdate", "_id", "_lastUpdated"} <= set(params)


async def test_lists_only_interactions_the_routes_implement(app, statement):
    routes = route_names(app)
    [rest] = statement["rest"]

    for res in rest["resource"]:
        codes = {i["code"] for i in res["interaction"]}
        assert codes <= TYPE_INTERACTIONS, res["type"]
        assert codes == TYPE_INTERACTIONS & routes, res["type"]
    system = {i["code"] for i in rest["interaction"]}
    assert system <= SYSTEM_INTERACTIONS
    assert {c for c in system if ROUTE_OF.get(c, c) not in routes} == set()
    assert {c for c in SYSTEM_INTERACTIONS if ROUTE_OF.get(c, c) in routes} <= system


async def test_conditional_flags_match_the_routes(app, statement):
    routes = route_names(app)

    for res in statement["rest"][0]["resource"]:
        assert res.get("conditionalUpdate", False) == ("conditional-update" in routes)
        assert (res.get("conditionalDelete", "not-supported") != "not-supported") == ("conditional-delete" in routes)
        assert res["conditionalRead"] == "full-support"  # test_read: If-None-Match and If-Modified-Since


@pytest.mark.parametrize("type", ["Patient", "Observation", "Encounter"])
async def test_every_listed_search_parameter_is_accepted_strictly(client, statement, type):
    for p in resource(statement, type)["searchParam"]:
        r = await client.get(f"/{type}", params={p["name"]: SAMPLE_VALUE[p["type"]]},
                             headers={"Prefer": "handling=strict"})
        assert r.status_code == 200, (p, r.text)


async def test_every_resource_type_is_listed_once(statement):
    types = [r["type"] for r in statement["rest"][0]["resource"]]

    assert len(types) == len(set(types))
    assert {"Patient", "Observation", "Bundle", "Task", "Encounter"} <= set(types)


async def test_format_xml_is_406(client):
    assert_outcome(await client.get("/metadata", params={"_format": "xml"}), 406, "not-supported")
