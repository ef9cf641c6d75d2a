"""read: GET [base]/[type]/[id] (http://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

from tests.fhir_server.interactions.conftest import (
    assert_outcome, create, delete, observation, patient, update, without_meta,
)

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

FULL_PATIENT = patient(
    "Chalmers",
    mrn="12345",
    gender="male",
    text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Peter Chalmers</div>'},
    contact=[{"name": {"family": "Du Marché"}, "telecom": [{"system": "phone", "value": "+33 555 2004"}]}],
    maritalStatus={"text": "married"},
    communication=[{"language": {"text": "French"}}],
)


async def test_returns_the_written_resource_with_version_headers(client):
    created = await create(client, FULL_PATIENT)

    r = await client.get(f"/Patient/{created['id']}")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(r.headers["last-modified"]).tzinfo is not None
    body = r.json()
    assert without_meta(body) == FULL_PATIENT
    assert body["id"] == created["id"]
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] == created["meta"]["lastUpdated"]


async def test_returns_the_current_version_after_an_update(client):
    created = await create(client, patient("Before"))
    await update(client, {**created, "name": [{"family": "After"}]})

    r = await client.get(f"/Patient/{created['id']}")

    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    assert r.json()["name"] == [{"family": "After"}]


async def test_returns_404_for_unknown_id(client):
    r = await client.get("/Patient/does-not-exist")

    assert_outcome(r, 404, "not-found", "Patient/does-not-exist")


async def test_returns_404_for_unknown_resource_type(client):
    r = await client.get("/Unicorn/1")

    assert_outcome(r, 404, "not-found")


async def test_returns_410_for_deleted_resource(client):
    created = await create(client, patient())
    await delete(client, f"/Patient/{created['id']}")

    r = await client.get(f"/Patient/{created['id']}")

    assert_outcome(r, 410, "deleted")
    assert r.headers["etag"] == 'W/"2"'


async def test_if_none_match_with_the_current_version_returns_304(client):
    created = await create(client, patient())

    for tag in ('W/"1"', '"1"'):
        r = await client.get(f"/Patient/{created['id']}", headers={"If-None-Match": tag})
        assert r.status_code == 304, tag
        assert r.content == b""
        assert r.headers["etag"] == 'W/"1"'


async def test_if_none_match_with_an_older_version_returns_the_resource(client):
    created = await create(client, patient())
    await update(client, created)

    r = await client.get(f"/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})

    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'


async def test_if_none_match_with_a_list_or_star_returns_304(client):
    created = await create(client, patient())

    for value in ('W/"7", W/"1"', "*"):
        r = await client.get(f"/Patient/{created['id']}", headers={"If-None-Match": value})
        assert r.status_code == 304, value


async def test_if_modified_since_returns_304_unless_modified_later(client):
    created = await create(client, patient())
    last_modified = (await client.get(f"/Patient/{created['id']}")).headers["last-modified"]
    earlier = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=1), usegmt=True)

    same = await client.get(f"/Patient/{created['id']}", headers={"If-Modified-Since": last_modified})
    changed = await client.get(f"/Patient/{created['id']}", headers={"If-Modified-Since": earlier})
    invalid = await client.get(f"/Patient/{created['id']}", headers={"If-Modified-Since": "soon"})

    assert same.status_code == 304
    assert same.headers["etag"] == 'W/"1"'
    assert changed.status_code == 200
    assert invalid.status_code == 200


async def test_if_none_match_wins_over_if_modified_since(client):
    created = await create(client, patient())
    last_modified = (await client.get(f"/Patient/{created['id']}")).headers["last-modified"]
    headers = {"If-None-Match": 'W/"9"', "If-Modified-Since": last_modified}

    r = await client.get(f"/Patient/{created['id']}", headers=headers)

    assert r.status_code == 200


async def test_summary_true_keeps_only_summary_elements(client):
    created = await create(client, FULL_PATIENT)

    r = await client.get(f"/Patient/{created['id']}", params={"_summary": "true"})

    assert r.status_code == 200
    body = r.json()
    # isSummary in the R4 Patient StructureDefinition: identifier, name, gender, birthDate (kept);
    # text, contact, maritalStatus, communication are not summary elements.
    assert body["name"] == FULL_PATIENT["name"]
    assert body["birthDate"] == "1970-01-01"
    assert body["identifier"] == FULL_PATIENT["identifier"]
    assert body["gender"] == "male"
    for dropped in ("text", "contact", "maritalStatus", "communication"):
        assert dropped not in body, dropped
    assert body["id"] == created["id"]
    assert SUBSETTED in body["meta"]["tag"]


async def test_summary_text_keeps_text_id_meta_and_mandatory_elements(client):
    obs = observation(text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">HR</div>'},
                      valueQuantity={"value": 80, "unit": "/min"})
    created = await create(client, obs)

    r = await client.get(f"/Observation/{created['id']}", params={"_summary": "text"})

    assert r.status_code == 200
    body = r.json()
    # R4: "Return only the text, id, meta, and top-level mandatory elements" (Observation: status, code)
    assert body["text"] == obs["text"]
    assert body["status"] == "final"
    assert body["code"] == obs["code"]
    assert "valueQuantity" not in body
    assert "effectiveDateTime" not in body
    assert SUBSETTED in body["meta"]["tag"]


async def test_summary_data_drops_only_the_text(client):
    created = await create(client, FULL_PATIENT)

    r = await client.get(f"/Patient/{created['id']}", params={"_summary": "data"})

    body = r.json()
    assert "text" not in body
    assert without_meta(body) == {k: v for k, v in FULL_PATIENT.items() if k != "text"}
    assert SUBSETTED in body["meta"]["tag"]


async def test_summary_false_returns_everything_untagged(client):
    created = await create(client, FULL_PATIENT)

    body = (await client.get(f"/Patient/{created['id']}", params={"_summary": "false"})).json()

    assert without_meta(body) == FULL_PATIENT
    assert "tag" not in body["meta"]


async def test_invalid_summary_value_is_400(client):
    created = await create(client, patient())

    r = await client.get(f"/Patient/{created['id']}", params={"_summary": "maybe"})

    assert_outcome(r, 400, "invalid", "_summary")


async def test_elements_keeps_the_named_elements_and_marks_subsetted(client):
    created = await create(client, FULL_PATIENT)

    r = await client.get(f"/Patient/{created['id']}", params={"_elements": "name"})

    body = r.json()
    assert set(body) == {"resourceType", "id", "meta", "name"}
    assert body["name"] == FULL_PATIENT["name"]
    assert SUBSETTED in body["meta"]["tag"]


async def test_elements_keeps_mandatory_elements_and_choice_types(client):
    created = await create(client, observation(valueQuantity={"value": 80, "unit": "/min"}))

    body = (await client.get(f"/Observation/{created['id']}", params={"_elements": "value"})).json()

    # R4 _elements: servers SHOULD always return mandatory elements (Observation: status, code)
    assert set(body) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}


async def test_elements_selects_choice_elements_with_multi_word_names(client):
    created = await create(client, patient(multipleBirthInteger=2))

    body = (await client.get(f"/Patient/{created['id']}", params={"_elements": "multipleBirth"})).json()

    assert body["multipleBirthInteger"] == 2
    assert "name" not in body


async def test_format_xml_is_406(client):
    created = await create(client, patient())

    for fmt in ("xml", "application/fhir+xml"):
        r = await client.get(f"/Patient/{created['id']}", params={"_format": fmt})
        assert_outcome(r, 406, "not-supported")


async def test_format_json_is_served(client):
    created = await create(client, patient())

    for fmt in ("json", "application/fhir+json", "application/json"):
        r = await client.get(f"/Patient/{created['id']}", params={"_format": fmt})
        assert r.status_code == 200, fmt
        assert r.json()["id"] == created["id"]


async def test_pretty_true_indents_the_body(client):
    created = await create(client, patient())

    pretty = await client.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
    plain = await client.get(f"/Patient/{created['id']}")

    assert pretty.status_code == 200
    assert b"\n  " in pretty.content
    assert b"\n" not in plain.content
    assert pretty.json() == plain.json()
