"""Chains, _has, _include/_revinclude, _list and _sort through the REST API, on both stores."""

from __future__ import annotations

import pytest

from tests.fhir_server.interactions.conftest import (
    SYS, assert_outcome, create, follow, observation, patient, search, search_ids,
)


async def _world(client):
    """Two patients with observations of two codes, one practitioner performing some."""
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "House"}]})
    a = await create(client, patient("Alpha", mrn="A-1"))
    b = await create(client, patient("Beta", mrn="B-2"))
    obs = {}
    for who, p in (("a", a), ("b", b)):
        for n, code in enumerate(("8867-4", "8867-4", "8310-5")):
            extra = {"performer": [{"reference": f"Practitioner/{doc['id']}"}]} if who == "a" and n == 0 else {}
            o = await create(client, observation(f"Patient/{p['id']}", code=code,
                                                 effective=f"2024-05-0{n + 1}T10:00:00Z", **extra))
            obs[f"{who}{n}"] = o["id"]
    return doc, a, b, obs


async def test_forward_chain_on_identifier_and_on_name(client):
    _doc, a, _b, obs = await _world(client)
    expected = sorted(obs[k] for k in ("a0", "a1", "a2"))
    assert sorted(await search_ids(client, "Observation", {"patient.identifier": f"{SYS}|A-1"})) == expected
    assert sorted(await search_ids(client, "Observation", {"subject:Patient.family": "alph"})) == expected
    assert await search_ids(client, "Observation", {"patient.identifier": f"{SYS}|nobody"}) == []
    # chain AND a plain parameter
    assert sorted(await search_ids(client, "Observation", {"patient.identifier": f"{SYS}|A-1",
                                                           "code": "8310-5"})) == [obs["a2"]]


async def test_reverse_chain_has(client):
    doc, a, b, _obs = await _world(client)
    assert sorted(await search_ids(client, "Patient", {"_has:Observation:patient:code": "8867-4"})) == sorted(
        [a["id"], b["id"]])
    assert await search_ids(client, "Patient", {"_has:Observation:patient:performer": f"Practitioner/{doc['id']}"}) == [
        a["id"]]
    assert await search_ids(client, "Patient", {"_has:Observation:patient:code": "0000-0"}) == []


async def test_include_and_revinclude_mark_their_entries(client):
    _doc, a, _b, obs = await _world(client)
    bundle = await search(client, "Observation", {"patient": f"Patient/{a['id']}", "_include": "Observation:patient"})
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    assert sum(1 for e in bundle["entry"] if e["search"]["mode"] == "include") == 1  # the patient once

    bundle = await search(client, "Patient", {"_id": a["id"], "_revinclude": "Observation:patient"})
    included = sorted(e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert included == sorted(obs[k] for k in ("a0", "a1", "a2"))


async def test_include_iterate_follows_included_resources(client):
    doc, a, _b, obs = await _world(client)
    bundle = await search(client, "Patient", {"_id": a["id"], "_revinclude": "Observation:patient",
                                              "_include:iterate": "Observation:performer"})
    kinds = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"])
    assert ("Practitioner", "include") in kinds and ("Patient", "match") in kinds


async def test_includes_beyond_the_cap_are_named_in_an_outcome(make_client):
    async with make_client(max_includes=2) as client:
        _doc, a, _b, _obs = await _world(client)
        bundle = await search(client, "Patient", {"_id": a["id"], "_revinclude": "Observation:patient"})
        assert sum(1 for e in bundle["entry"] if e["search"]["mode"] == "include") == 2
        outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
        assert outcome and "Observation:patient" in outcome[0]["resource"]["issue"][0]["diagnostics"]


async def test_chain_past_the_bound_asks_to_narrow(make_client):
    async with make_client(max_chain_ids=1) as client:
        await _world(client)
        r = await client.get("/Observation", params={"patient.birthdate": "1970"})  # both patients
        assert_outcome(r, 400, "too-costly")


async def test_has_past_the_bound_is_probed_on_the_embedded_store_and_refused_on_mongodb(make_client, settings):
    """Four Observations of the code refer to two patients: past a bound of one, MongoDB refuses
    to list the referenced ids, while the embedded store probes each Patient for a referrer."""
    async with make_client(max_chain_ids=1) as client:
        _doc, a, b, _obs = await _world(client)
        r = await client.get("/Patient", params={"_has:Observation:patient:code": "8867-4"})
        if settings.store:  # MongoDB
            assert_outcome(r, 400, "too-costly")
        else:
            assert r.status_code == 200, r.text
            assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == sorted([a["id"], b["id"]])


async def test_list_selects_its_items(client):
    _doc, a, b, _obs = await _world(client)
    lst = await create(client, {"resourceType": "List", "status": "current", "mode": "working",
                                "entry": [{"item": {"reference": f"Patient/{b['id']}"}}]})
    assert await search_ids(client, "Patient", {"_list": lst["id"]}) == [b["id"]]
    assert await search_ids(client, "Patient", {"_list": "no-such-list"}) == []


@pytest.mark.parametrize("sort,expected", [("date", ["a0", "a1", "a2"]), ("-date", ["a2", "a1", "a0"]),
                                           ("code,-date", ["a2", "a1", "a0"])])
async def test_sort_pages_in_order(client, sort, expected):
    _doc, a, _b, obs = await _world(client)
    pages = await follow(client, "/Observation", {"patient": f"Patient/{a['id']}", "_sort": sort, "_count": 1})
    assert [e["resource"]["id"] for p in pages for e in p.get("entry", [])] == [obs[k] for k in expected]


async def test_unknown_sort_parameter_is_400(client):
    r = await client.get("/Observation", params={"_sort": "nonsense"})
    assert_outcome(r, 400, "invalid", "_sort")
