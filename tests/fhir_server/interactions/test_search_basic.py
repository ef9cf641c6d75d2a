"""search: GET [base]/[type]?params and POST [base]/[type]/_search (http://hl7.org/fhir/R4/http.html#search,
http://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest

from tests.fhir_server.interactions.conftest import (
    cursor,
    LOINC, SYS, assert_issue, assert_outcome, create, follow, match_ids, observation, patient, search,
    search_ids,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _patients(client) -> dict[str, str]:
    """name -> id, for a few patients with and without identifier systems."""
    people = [
        patient("Smith", mrn="1"),
        patient("Smithers", mrn="2"),
        patient("Müller", identifier=[{"value": "1"}]),  # same code, no system
        patient("Jones", identifier=[{"system": "http://other.org", "value": "1"}]),
    ]
    return {p["name"][0]["family"]: (await create(client, p))["id"] for p in people}


async def _observations(client, subject: str) -> dict[str, str]:
    """effective date -> id."""
    out = {}
    for day in ("01", "03", "05"):
        out[day] = (await create(client, observation(subject, effective=f"2024-05-{day}T10:00:00Z")))["id"]
    return out


async def test_get_and_post_search_return_the_same_matches(client):
    ids = await _patients(client)

    get = await client.get("/Patient", params={"name": "smith"})
    post = await client.post("/Patient/_search", content="name=smith", headers=FORM)

    assert get.status_code == post.status_code == 200
    assert sorted(match_ids(get.json())) == sorted(match_ids(post.json())) == sorted([ids["Smith"], ids["Smithers"]])


async def test_post_search_combines_url_and_body_parameters(client):
    ids = await _patients(client)

    r = await client.post("/Patient/_search?name=smith", content=f"identifier={SYS}|2", headers=FORM)

    assert r.status_code == 200
    assert match_ids(r.json()) == [ids["Smithers"]]


async def test_post_search_without_form_body_is_415(client):
    r = await client.post("/Patient/_search", json={"name": "x"})

    assert_outcome(r, 415, "not-supported")


async def test_post_search_with_a_body_that_is_not_utf8_is_400(client):
    r = await client.post("/Patient/_search", content=b"name=\xff", headers=FORM)

    assert_outcome(r, 400, "structure")


async def test_search_bundle_shape(client):
    ids = await _patients(client)

    bundle = await search(client, "Patient", {"name": "smithers"})

    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert any(link["relation"] == "self" for link in bundle["link"])
    [entry] = bundle["entry"]
    assert entry["fullUrl"] == f"http://testserver/fhir/Patient/{ids['Smithers']}"
    assert entry["search"]["mode"] == "match"


async def test_token_with_system_and_code(client):
    ids = await _patients(client)

    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|1"}) == [ids["Smith"]]


async def test_token_with_code_only_matches_any_system(client):
    ids = await _patients(client)

    found = await search_ids(client, "Patient", {"identifier": "1"})

    assert sorted(found) == sorted([ids["Smith"], ids["Müller"], ids["Jones"]])


async def test_token_with_empty_system_matches_only_codes_without_system(client):
    ids = await _patients(client)

    assert await search_ids(client, "Patient", {"identifier": "|1"}) == [ids["Müller"]]


async def test_token_with_system_only(client):
    ids = await _patients(client)

    assert await search_ids(client, "Patient", {"identifier": "http://other.org|"}) == [ids["Jones"]]


async def test_token_on_a_codeable_concept(client):
    p = await create(client, patient())
    obs = await _observations(client, f"Patient/{p['id']}")
    other = await create(client, observation(f"Patient/{p['id']}", code="1234-5"))

    assert sorted(await search_ids(client, "Observation", {"code": f"{LOINC}|8867-4"})) == sorted(obs.values())
    assert await search_ids(client, "Observation", {"code": "1234-5"}) == [other["id"]]


async def test_string_matches_prefix_case_and_accent_insensitively(client):
    ids = await _patients(client)

    assert sorted(await search_ids(client, "Patient", {"name": "SMI"})) == sorted([ids["Smith"], ids["Smithers"]])
    assert await search_ids(client, "Patient", {"family": "muller"}) == [ids["Müller"]]
    assert await search_ids(client, "Patient", {"name": "mith"}) == []


async def test_string_exact_matches_the_whole_value_case_sensitively(client):
    ids = await _patients(client)

    assert await search_ids(client, "Patient", {"family:exact": "Smith"}) == [ids["Smith"]]
    assert await search_ids(client, "Patient", {"family:exact": "smith"}) == []
    assert await search_ids(client, "Patient", {"family:exact": "Müller"}) == [ids["Müller"]]


async def test_reference_type_and_id(client):
    a = await create(client, patient("A"))
    b = await create(client, patient("B"))
    obs_a = await _observations(client, f"Patient/{a['id']}")
    await _observations(client, f"Patient/{b['id']}")

    found = await search_ids(client, "Observation", {"subject": f"Patient/{a['id']}"})

    assert sorted(found) == sorted(obs_a.values())
    assert sorted(await search_ids(client, "Observation", {"subject:Patient": a["id"]})) == sorted(obs_a.values())


async def test_reference_by_id_alone(client):
    a = await create(client, patient("A"))
    obs_a = await _observations(client, f"Patient/{a['id']}")

    # R4 search.html#reference: [parameter]=[id] is the logical id of a relative reference
    assert sorted(await search_ids(client, "Observation", {"patient": a["id"]})) == sorted(obs_a.values())


async def test_date_prefixes_on_effective_date_time(client):
    p = await create(client, patient())
    obs = await _observations(client, f"Patient/{p['id']}")

    cases = {
        "2024-05-03": ["03"], "eq2024-05-03": ["03"], "ne2024-05-03": ["01", "05"],
        "gt2024-05-03": ["05"], "lt2024-05-03": ["01"], "ge2024-05-03": ["03", "05"], "le2024-05-03": ["01", "03"],
        "sa2024-05-03": ["05"], "eb2024-05-03": ["01"], "2024-05": ["01", "03", "05"], "2024-06": [],
        "ge2024-05-03T10:00:00Z": ["03", "05"], "lt2024-05-03T10:00:00Z": ["01"],
    }
    for value, days in cases.items():
        found = await search_ids(client, "Observation", {"date": value})
        assert sorted(found) == sorted(obs[d] for d in days), value


async def test_two_date_clauses_make_a_range(client):
    p = await create(client, patient())
    obs = await _observations(client, f"Patient/{p['id']}")

    found = await search_ids(client, "Observation", [("date", "ge2024-05-02"), ("date", "le2024-05-04")])

    assert found == [obs["03"]]


async def test_invalid_date_is_400_naming_the_parameter(client):
    r = await client.get("/Observation", params={"date": "yesterday"})

    assert_outcome(r, 400, "invalid", "date")


async def test_id_parameter(client):
    ids = await _patients(client)

    assert await search_ids(client, "Patient", {"_id": ids["Jones"]}) == [ids["Jones"]]
    found = await search_ids(client, "Patient", {"_id": f"{ids['Jones']},{ids['Smith']}"})
    assert sorted(found) == sorted([ids["Jones"], ids["Smith"]])


async def test_count_and_next_links_page_through_every_match_once(client):
    made = {(await create(client, patient(f"P{i}")))["id"] for i in range(7)}

    pages = await follow(client, "/Patient", {"_count": "3"})

    assert [len(p.get("entry", [])) for p in pages] == [3, 3, 1]
    seen = [id for p in pages for id in match_ids(p)]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == made


async def test_paging_keeps_the_search_criteria(client):
    ids = await _patients(client)
    for i in range(3):
        await create(client, patient(f"Smith{i}"))

    found = await search_ids(client, "Patient", {"name": "smith", "_count": "2"})

    assert len(found) == 5
    assert ids["Jones"] not in found


async def test_unknown_parameter_is_ignored_and_reported_in_an_outcome_entry(client):
    ids = await _patients(client)

    bundle = await search(client, "Patient", {"name": "jones", "shoe-size": "42"})

    assert match_ids(bundle) == [ids["Jones"]]
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    assert_issue(outcomes[0]["resource"], "not-supported", "shoe-size")


async def test_unknown_parameter_with_strict_handling_is_400(client):
    r = await client.get("/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"})

    assert_outcome(r, 400, "invalid", "shoe-size")


async def test_total_accurate_counts_all_matches(client):
    await _patients(client)

    bundle = await search(client, "Patient", {"name": "smith", "_total": "accurate", "_count": "1"})

    assert bundle["total"] == 2
    assert len(match_ids(bundle)) == 1


async def test_invalid_total_is_400(client):
    assert_outcome(await client.get("/Patient", params={"_total": "lots"}), 400, "invalid", "_total")


async def test_summary_count_returns_only_the_total(client):
    await _patients(client)

    r = await client.get("/Patient", params={"name": "smith", "_summary": "count"})

    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] == 2
    assert match_ids(bundle) == []


async def test_count_zero_returns_no_matches(client):
    await _patients(client)

    r = await client.get("/Patient", params={"_count": "0"})

    assert r.status_code == 200, r.text
    assert match_ids(r.json()) == []


async def test_summary_true_in_search_marks_entries_subsetted(client):
    await create(client, patient(contact=[{"name": {"family": "X"}}]))

    bundle = await search(client, "Patient", {"_summary": "true"})

    [resource] = [e["resource"] for e in bundle["entry"]]
    assert "contact" not in resource
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


async def test_search_of_unknown_type_is_404(client):
    assert_outcome(await client.get("/Unicorn", params={"name": "x"}), 404, "not-found")


async def test_search_without_matches_is_an_empty_searchset(client):
    bundle = await search(client, "Patient", {"name": "nobody"})

    assert bundle.get("entry", []) == []


async def test_cursor_that_does_not_decode_is_400(client):
    r = await client.get("/Patient", params={"_cursor": "not a cursor"})

    assert_outcome(r, 400, "invalid", "_cursor")


@pytest.mark.parametrize("key", [[], ["a", "b", "c"]])
async def test_cursor_of_the_wrong_length_is_400(client, key):
    await create(client, patient())

    r = await client.get("/Patient", params={"_cursor": cursor(key)})

    assert_outcome(r, 400, "invalid", "_cursor")


async def test_cursor_with_values_of_the_wrong_type_is_no_server_error(client):
    await create(client, patient())

    r = await client.get("/Patient", params={"_cursor": cursor([{"a": 1}])})

    assert r.status_code in (200, 400), r.text
    assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")


@pytest.mark.parametrize("name", ["_text", "_content", "_contained", "_query"])
async def test_parameters_with_nothing_indexed_are_reported_not_silently_empty(client, name):
    await create(client, patient())
    lenient = await search(client, "Patient", {name: "x"})
    outcome = [e for e in lenient.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["expression"] == [name]
    strict = await client.get("/Patient", params={name: "x"}, headers={"Prefer": "handling=strict"})
    assert_outcome(strict, 400, "invalid", name)


@pytest.mark.parametrize("name", ["_id:missing", "_lastUpdated:missing"])
async def test_missing_on_id_and_last_updated_is_refused(client, name):
    assert_outcome(await client.get("/Patient", params={name: "true"}), 400, "invalid", name)
