"""transaction: POST [base] with a Bundle of type transaction (http://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import asyncio
import uuid

from tests.fhir_server.interactions.conftest import (
    SYS, assert_outcome, create, observation, patient, post_bundle, read_json, search_ids, writes_so_far,
)


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource: dict, full_url: str | None = None, if_none_exist: str | None = None) -> dict:
    e: dict = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        e["fullUrl"] = full_url
    if if_none_exist:
        e["request"]["ifNoneExist"] = if_none_exist
    return e


def put_entry(url: str, resource: dict, if_match: str | None = None) -> dict:
    e = {"resource": resource, "request": {"method": "PUT", "url": url}}
    if if_match:
        e["request"]["ifMatch"] = if_match
    return e


def delete_entry(url: str) -> dict:
    return {"request": {"method": "DELETE", "url": url}}


def get_entry(url: str) -> dict:
    return {"request": {"method": "GET", "url": url}}


async def run(client, *entries: dict, status: int = 200) -> dict:
    r = await post_bundle(client, transaction(*entries))
    assert r.status_code == status, r.text
    return r.json()


async def test_patient_and_observations_linked_by_urn_uuid_are_stored_with_rewritten_references(client):
    pid = urn()
    entries = [post_entry(patient(mrn="tx"), pid)] + [
        post_entry(observation(pid, effective=f"2024-05-{d:02d}T10:00:00Z"), urn()) for d in range(1, 11)
    ]

    out = await run(client, *entries)

    assert out["resourceType"] == "Bundle"
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == 11
    for e in out["entry"]:
        assert e["response"]["status"].startswith("201")
        assert e["response"]["etag"] == 'W/"1"'
        assert e["response"]["location"].split("/_history/")[1] == "1"
    patient_id = out["entry"][0]["response"]["location"].split("/")[1]
    assert (await read_json(client, f"/Patient/{patient_id}"))["identifier"][0]["value"] == "tx"
    obs_ids = await search_ids(client, "Observation", {"subject": f"Patient/{patient_id}"})
    assert len(obs_ids) == 10
    for e in out["entry"][1:]:
        type, id = e["response"]["location"].split("/")[:2]
        stored = await read_json(client, f"/{type}/{id}")
        assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
        assert id in obs_ids


async def test_response_entries_follow_request_order_with_resources(client):
    out = await run(client, post_entry(patient("First")), post_entry(patient("Second")))

    assert [e["resource"]["name"][0]["family"] for e in out["entry"]] == ["First", "Second"]
    for e in out["entry"]:
        assert e["fullUrl"].endswith(f"/Patient/{e['resource']['id']}")


async def test_conditional_reference_is_resolved_to_the_matching_resource(client):
    p = await create(client, patient(mrn="cond"))
    await create(client, patient(mrn="other"))

    out = await run(client, post_entry(observation(f"Patient?identifier={SYS}|cond")))

    type, id = out["entry"][0]["response"]["location"].split("/")[:2]
    assert (await read_json(client, f"/{type}/{id}"))["subject"] == {"reference": f"Patient/{p['id']}"}


async def test_conditional_reference_without_match_fails_the_whole_transaction(client):
    before = await writes_so_far(client)

    r = await post_bundle(client, transaction(post_entry(patient()),
                                              post_entry(observation(f"Patient?identifier={SYS}|nobody"))))

    assert_outcome(r, 404, "not-found", "Bundle.entry[1]")
    assert await writes_so_far(client) == before


async def test_conditional_reference_with_two_matches_is_412(client):
    await create(client, patient(mrn="twice"))
    await create(client, patient(mrn="twice"))

    r = await post_bundle(client, transaction(post_entry(observation(f"Patient?identifier={SYS}|twice"))))

    assert_outcome(r, 412, "multiple-matches", "Bundle.entry[0]")
    assert await writes_so_far(client) == 2


async def test_an_invalid_entry_fails_everything_and_names_the_entry(client):
    await create(client, patient())
    before = await writes_so_far(client)

    r = await post_bundle(client, transaction(
        post_entry(patient("Good")), post_entry(patient("Good too")), post_entry(patient(foo="bar")),
    ))

    assert_outcome(r, 422, "structure", "Bundle.entry[2].resource.foo")
    assert await writes_so_far(client) == before
    assert len(await search_ids(client, "Patient", {})) == 1


async def test_an_invalid_date_in_an_entry_names_its_path(client):
    r = await post_bundle(client, transaction(post_entry(patient()), post_entry(patient(birthDate="1970-13-45"))))

    assert_outcome(r, 422, "value", "Bundle.entry[1].resource.birthDate")
    assert await writes_so_far(client) == 0


async def test_if_match_failure_inside_is_412_and_writes_nothing(client):
    p = await create(client, patient("Before"))
    await client.put(f"/Patient/{p['id']}", json=p, headers={"Content-Type": "application/fhir+json"})
    before = await writes_so_far(client)

    r = await post_bundle(client, transaction(
        post_entry(patient("New")),
        put_entry(f"Patient/{p['id']}", {**p, "name": [{"family": "After"}]}, if_match='W/"1"'),
    ))

    assert_outcome(r, 412, None, "Bundle.entry[1]")
    assert await writes_so_far(client) == before
    assert (await read_json(client, f"/Patient/{p['id']}"))["name"][0]["family"] == "Before"


async def test_if_match_success_inside_updates(client):
    p = await create(client, patient("Before"))

    out = await run(client, put_entry(f"Patient/{p['id']}", {**p, "name": [{"family": "After"}]}, if_match='W/"1"'))

    assert out["entry"][0]["response"]["status"].startswith("200")
    assert out["entry"][0]["response"]["etag"] == 'W/"2"'


async def test_processing_order_is_delete_post_put_get(client):
    doomed = await create(client, patient("Doomed", mrn="order"))
    kept = await create(client, patient("Kept"))

    out = await run(
        client,
        get_entry(f"Patient/{kept['id']}"),                           # GET last: sees the PUT
        put_entry(f"Patient/{kept['id']}", {**kept, "gender": "female"}),
        post_entry(patient("Newcomer", mrn="order"), if_none_exist=f"identifier={SYS}|order"),  # after the DELETE
        delete_entry(f"Patient/{doomed['id']}"),
    )

    statuses = [e["response"]["status"][:3] for e in out["entry"]]
    assert statuses == ["200", "200", "201", "204"], out
    assert out["entry"][0]["resource"]["gender"] == "female"
    assert out["entry"][0]["resource"]["meta"]["versionId"] == "2"
    assert (await client.get(f"/Patient/{doomed['id']}")).status_code == 410
    [newcomer] = await search_ids(client, "Patient", {"identifier": f"{SYS}|order"})
    assert newcomer != doomed["id"]


async def test_get_entries_see_resources_created_in_the_same_transaction(client):
    pid = urn()

    out = await run(client, get_entry(f"Patient?identifier={SYS}|seen"), post_entry(patient(mrn="seen"), pid))

    search = out["entry"][0]["resource"]
    assert search["type"] == "searchset"
    assert [e["resource"]["id"] for e in search["entry"]] == [out["entry"][1]["resource"]["id"]]


async def test_two_entries_changing_the_same_resource_are_400(client):
    p = await create(client, patient())

    r = await post_bundle(client, transaction(
        put_entry(f"Patient/{p['id']}", {**p, "gender": "male"}),
        delete_entry(f"Patient/{p['id']}"),
    ))

    assert_outcome(r, 400, "invalid", "Bundle.entry[1]")
    assert await writes_so_far(client) == 1


async def test_two_entries_with_the_same_full_url_are_400(client):
    same = urn()

    r = await post_bundle(client, transaction(post_entry(patient("A"), same), post_entry(patient("B"), same)))

    assert_outcome(r, 400, "invalid", "Bundle.entry[1]")
    assert await writes_so_far(client) == 0


async def test_conditional_create_matching_an_existing_resource_redirects_references_to_it(client):
    existing = await create(client, patient(mrn="known"))
    pid = urn()

    out = await run(
        client,
        post_entry(patient(mrn="known"), pid, if_none_exist=f"identifier={SYS}|known"),
        post_entry(observation(pid)),
    )

    assert out["entry"][0]["response"]["status"].startswith("200")
    assert out["entry"][0]["resource"]["id"] == existing["id"]
    type, id = out["entry"][1]["response"]["location"].split("/")[:2]
    assert (await read_json(client, f"/{type}/{id}"))["subject"] == {"reference": f"Patient/{existing['id']}"}
    assert await search_ids(client, "Patient", {"identifier": f"{SYS}|known"}) == [existing["id"]]


async def test_reference_to_an_unknown_urn_uuid_is_400(client):
    r = await post_bundle(client, transaction(post_entry(observation(urn()))))

    assert_outcome(r, 400, "invalid", "Bundle.entry[0]")
    assert await writes_so_far(client) == 0


async def test_put_entry_creates_and_updates(client):
    p = await create(client, patient())

    out = await run(client, put_entry("Patient/tx-new", patient(id="tx-new")),
                    put_entry(f"Patient/{p['id']}", {**p, "gender": "other"}))

    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "200"]
    assert out["entry"][0]["response"]["location"].startswith("Patient/tx-new/_history/1")
    assert (await read_json(client, "/Patient/tx-new"))["id"] == "tx-new"


async def test_put_entry_with_an_id_differing_from_the_url_is_400(client):
    r = await post_bundle(client, transaction(put_entry("Patient/a", patient(id="b"))))

    assert_outcome(r, 400, "invalid", "Bundle.entry[0]")
    assert await writes_so_far(client) == 0


async def test_delete_entry_of_a_referenced_resource_is_409(client):
    p = await create(client, patient())
    await create(client, observation(f"Patient/{p['id']}"))

    r = await post_bundle(client, transaction(delete_entry(f"Patient/{p['id']}")))

    assert_outcome(r, 409, "conflict")
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 200


async def test_deleting_a_resource_and_its_referrer_together_succeeds(client):
    p = await create(client, patient())
    o = await create(client, observation(f"Patient/{p['id']}"))

    out = await run(client, delete_entry(f"Patient/{p['id']}"), delete_entry(f"Observation/{o['id']}"))

    assert [e["response"]["status"][:3] for e in out["entry"]] == ["204", "204"]
    assert (await client.get(f"/Patient/{p['id']}")).status_code == 410
    assert (await client.get(f"/Observation/{o['id']}")).status_code == 410


async def test_entry_without_request_is_400(client):
    r = await post_bundle(client, transaction({"resource": patient()}))

    assert_outcome(r, 400, "invalid", "Bundle.entry[0].request")


async def test_bundle_of_another_type_is_400(client):
    r = await post_bundle(client, {"resourceType": "Bundle", "type": "collection", "entry": []})

    assert_outcome(r, 400, "invalid", "Bundle.type")


async def test_body_that_is_not_a_bundle_is_400(client):
    r = await post_bundle(client, patient())

    assert 400 <= r.status_code < 500
    assert await writes_so_far(client) == 0


async def test_prefer_minimal_leaves_out_the_resources(client):
    r = await post_bundle(client, transaction(post_entry(patient())), {"Prefer": "return=minimal"})

    assert r.status_code == 200
    [e] = r.json()["entry"]
    assert "resource" not in e
    assert e["response"]["status"].startswith("201")


async def test_empty_transaction_is_an_empty_response(client):
    out = await run(client)

    assert out["type"] == "transaction-response"
    assert out.get("entry", []) == []


async def test_deleting_a_resource_that_a_new_entry_references_is_409(client):
    p = await create(client, patient())

    r = await post_bundle(client, transaction(delete_entry(f"Patient/{p['id']}"),
                                              post_entry(observation(f"Patient/{p['id']}"))))

    assert_outcome(r, 409, "conflict", "Bundle.entry[0]")
    assert await writes_so_far(client) == 1


async def test_conditional_and_direct_put_of_the_same_resource_are_400(client):
    p = await create(client, patient(mrn="both"))

    r = await post_bundle(client, transaction(
        put_entry(f"Patient/{p['id']}", {**p, "gender": "male"}),
        put_entry(f"Patient?identifier={SYS}|both", patient(mrn="both", gender="female")),
    ))

    assert_outcome(r, 400, "invalid", "Bundle.entry[1]")
    assert await writes_so_far(client) == 1


async def test_conditional_update_entry_after_a_delete_of_its_match_creates(client):
    p = await create(client, patient(mrn="re"))

    out = await run(client, put_entry(f"Patient?identifier={SYS}|re", patient("Again", mrn="re")),
                    delete_entry(f"Patient/{p['id']}"))

    assert [e["response"]["status"][:3] for e in out["entry"]] == ["201", "204"]
    [again] = await search_ids(client, "Patient", {"identifier": f"{SYS}|re"})
    assert again != p["id"]


async def test_concurrent_transactions_with_the_same_conditional_create_make_one_resource(client):
    bundles = [transaction(post_entry(patient(mrn="tx-race"), urn(), if_none_exist=f"identifier={SYS}|tx-race"))
               for _ in range(10)]

    responses = await asyncio.gather(*(post_bundle(client, b) for b in bundles))

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len(await search_ids(client, "Patient", {"identifier": f"{SYS}|tx-race"})) == 1


async def test_request_fields_of_the_wrong_json_type_are_400(client):
    cases = [
        ({**post_entry(patient()), "fullUrl": 5}, "Bundle.entry[0].fullUrl"),
        ({"resource": patient(), "request": {"method": "POST", "url": "Patient", "ifNoneExist": 5}},
         "Bundle.entry[0].request.ifNoneExist"),
        (put_entry("Patient/a", patient(id="a"), if_match="yesterday"), "Bundle.entry[0].request.ifMatch"),
    ]
    for entry, expression in cases:
        r = await post_bundle(client, transaction(entry))
        assert_outcome(r, 400, "invalid", expression)
    assert await writes_so_far(client) == 0
