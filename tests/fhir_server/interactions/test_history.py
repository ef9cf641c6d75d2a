"""history: instance, type and system (http://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import asyncio

import pytest

from tests.fhir_server.interactions.conftest import (
    cursor,
    assert_outcome, create, follow, history_entries, mongodb_only_on, observation, patient, update,
)


def versions(entries: list[dict]) -> list[tuple[str, str]]:
    """(Type/id, version) of each entry, from fullUrl and the response ETag."""
    return [(e["fullUrl"].split("/fhir/", 1)[1], e["response"]["etag"]) for e in entries]


async def _two_patients_and_an_observation(client) -> tuple[dict, dict, dict]:
    """Writes, oldest first: a1 a2 b1 o1 a3."""
    a = await create(client, patient("A"))
    await update(client, {**a, "gender": "female"})
    b = await create(client, patient("B"))
    o = await create(client, observation(f"Patient/{a['id']}"))
    await update(client, {**a, "gender": "male"})
    return a, b, o


async def test_instance_history_lists_the_versions_newest_first(client):
    a, _, _ = await _two_patients_and_an_observation(client)

    r = await client.get(f"/Patient/{a['id']}/_history")

    assert r.status_code == 200
    assert "last-modified" in r.headers
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    entries = bundle["entry"]
    assert versions(entries) == [(f"Patient/{a['id']}", f'W/"{v}"') for v in (3, 2, 1)]
    assert [e["resource"]["meta"]["versionId"] for e in entries] == ["3", "2", "1"]
    assert [e["request"]["method"] for e in entries] == ["PUT", "PUT", "POST"]
    assert entries[2]["request"]["url"] == "Patient"
    assert entries[0]["request"]["url"] == f"Patient/{a['id']}"
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[2]["response"]["status"].startswith("201")


async def test_type_history_lists_only_that_type_newest_first(client):
    a, b, _ = await _two_patients_and_an_observation(client)

    entries = await history_entries(client, "/Patient/_history")

    assert versions(entries) == [
        (f"Patient/{a['id']}", 'W/"3"'), (f"Patient/{b['id']}", 'W/"1"'),
        (f"Patient/{a['id']}", 'W/"2"'), (f"Patient/{a['id']}", 'W/"1"'),
    ]


async def test_system_history_lists_every_type_newest_first(client):
    a, b, o = await _two_patients_and_an_observation(client)

    entries = await history_entries(client, "/_history")

    assert versions(entries) == [
        (f"Patient/{a['id']}", 'W/"3"'), (f"Observation/{o['id']}", 'W/"1"'), (f"Patient/{b['id']}", 'W/"1"'),
        (f"Patient/{a['id']}", 'W/"2"'), (f"Patient/{a['id']}", 'W/"1"'),
    ]


async def test_since_keeps_versions_updated_at_or_after_the_instant(client, request):
    mongodb_only_on(request, "SecantusDB drops index keys equal to an inclusive range bound on a middle field of "
                             "a compound index: {t, i, lu >= x} on (t, i, lu, o, _id) misses lu == x")
    a = await create(client, patient())
    v2 = await update(client, a)
    await asyncio.sleep(0.002)
    v3 = await update(client, a)

    entries = await history_entries(client, f"/Patient/{a['id']}/_history", {"_since": v2["meta"]["lastUpdated"]})

    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"']
    entries = await history_entries(client, "/_history", {"_since": v3["meta"]["lastUpdated"]})
    assert versions(entries) == [(f"Patient/{a['id']}", 'W/"3"')]


async def test_at_keeps_the_versions_current_at_the_instant(client):
    a = await create(client, patient("A"))
    b = await create(client, patient("B"))
    a2 = await update(client, a)
    await asyncio.sleep(0.002)
    await update(client, a)
    await update(client, b)

    entries = await history_entries(client, "/Patient/_history", {"_at": a2["meta"]["lastUpdated"]})

    assert sorted(versions(entries)) == sorted([(f"Patient/{a['id']}", 'W/"2"'), (f"Patient/{b['id']}", 'W/"1"')])


async def test_invalid_since_is_400(client):
    r = await client.get("/_history", params={"_since": "last tuesday"})

    assert_outcome(r, 400, "invalid", "_since")


async def test_count_pages_through_next_links_until_exhausted(client):
    a = await create(client, patient())
    for _ in range(6):
        await update(client, a)

    pages = await follow(client, f"/Patient/{a['id']}/_history", {"_count": "2"})

    assert [len(p.get("entry", [])) for p in pages] == [2, 2, 2, 1]
    seen = [e["response"]["etag"] for p in pages for e in p["entry"]]
    assert seen == [f'W/"{v}"' for v in range(7, 0, -1)]
    assert all(any(link["relation"] == "self" for link in p["link"]) for p in pages)


async def test_system_history_paging_sees_every_version_exactly_once(client):
    ids = [(await create(client, patient(str(i))))["id"] for i in range(5)]
    for id in ids[:3]:
        await update(client, {**patient(), "id": id})

    pages = await follow(client, "/_history", {"_count": "2"})

    seen = [v for v in versions([e for p in pages for e in p.get("entry", [])]) if not v[0].startswith("AuditEvent/")]
    assert len(seen) == 8
    assert len(set(seen)) == 8


async def test_history_of_a_deleted_resource_has_a_delete_entry(client):
    a = await create(client, patient())
    await client.delete(f"/Patient/{a['id']}")

    entries = await history_entries(client, f"/Patient/{a['id']}/_history")

    assert [e["request"]["method"] for e in entries] == ["DELETE", "POST"]
    deletion = entries[0]
    assert deletion["request"]["url"] == f"Patient/{a['id']}"
    assert deletion["response"]["etag"] == 'W/"2"'
    assert deletion["response"]["status"].startswith("204") or deletion["response"]["status"].startswith("200")
    assert "resource" not in deletion


async def test_instance_history_of_unknown_resource_is_404(client):
    assert_outcome(await client.get("/Patient/ghost/_history"), 404, "not-found")


async def test_type_history_of_unknown_type_is_404(client):
    assert_outcome(await client.get("/Unicorn/_history"), 404, "not-found")


async def test_empty_history_is_an_empty_bundle(client):
    r = await client.get("/Patient/_history")

    assert r.status_code == 200
    assert r.json()["type"] == "history"
    assert r.json().get("entry", []) == []


async def test_count_zero_returns_no_entries(client):
    await create(client, patient())

    r = await client.get("/_history", params={"_count": "0"})

    assert r.status_code == 200, r.text
    assert r.json().get("entry", []) == []


async def test_count_that_is_not_a_number_is_400(client):
    assert_outcome(await client.get("/_history", params={"_count": "many"}), 400, "invalid", "_count")


async def test_cursor_that_does_not_decode_is_400(client):
    r = await client.get("/_history", params={"_cursor": "not a cursor"})

    assert_outcome(r, 400, "invalid", "_cursor")


@pytest.mark.parametrize("key", [["x"], [], [{"a": 1}]])
async def test_tampered_cursor_is_400(client, key):
    await create(client, patient())

    r = await client.get("/_history", params={"_cursor": cursor(key)})

    assert_outcome(r, 400, "invalid", "_cursor")
