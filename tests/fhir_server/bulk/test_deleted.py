"""The manifest's ``deleted[]`` for a ``_since`` export: what was deleted since then (NAT-1)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.fhir_server.bulk.conftest import download, kickoff, observation, patient, put_all, wait

pytestmark = pytest.mark.req("NAT-1")

HEART, TEMP = "8867-4", "8310-5"


async def deleted_of(client, manifest: dict) -> list[dict]:
    out = []
    for item in manifest["deleted"]:
        assert item["type"] == "Bundle"
        r = await client.get(item["url"])
        assert r.status_code == 200, r.text
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert len(lines) == item["count"]
        out += lines
    return out


def deleted_urls(bundles: list[dict]) -> list[str]:
    for b in bundles:
        assert b["resourceType"] == "Bundle" and b["type"] == "transaction" and b["meta"]["lastUpdated"]
        assert all(e["request"]["method"] == "DELETE" for e in b["entry"])
    return sorted(e["request"]["url"] for b in bundles for e in b["entry"])


async def delete(client, ref: str) -> None:
    assert (await client.delete(ref)).status_code in (200, 204)


async def test_since_export_lists_deletions_as_transaction_bundles(app, client):
    await put_all(client, *[patient(f"p{i}") for i in range(4)],
                  *[observation(f"o{i}", "p0", code=HEART if i % 2 else TEMP) for i in range(4)])
    first = await wait(client, await kickoff(client, _type="Patient,Observation"))
    assert "deleted" not in first  # not a _since export
    await asyncio.sleep(0.01)
    await delete(client, "Patient/p1")
    await delete(client, "Observation/o2")
    await put_all(client, patient("p0", gender="female"), patient("brief"), patient("p3", gender="male"))
    await delete(client, "Patient/brief")
    await delete(client, "Patient/p2")
    await put_all(client, patient("p2"))  # deleted and created again: not deleted
    svc = app.state.services
    await svc.bulk.stop()
    url = await kickoff(client, _type="Patient,Observation", _since=first["transactionTime"])
    await delete(client, "Patient/p3")  # after transactionTime: exported as it was, not listed
    await svc.bulk.start()
    manifest = await wait(client, url)
    got = await download(client, manifest)
    assert sorted(r["id"] for r in got["Patient"]) == ["p0", "p2", "p3"]
    assert deleted_urls(await deleted_of(client, manifest)) == ["Observation/o2", "Patient/brief", "Patient/p1"]


async def test_deleted_respects_the_type_filter(client):
    await put_all(client, *[observation(f"o{i}", "p0", code=HEART if i % 2 else TEMP) for i in range(4)])
    first = await wait(client, await kickoff(client, _type="Observation"))
    await asyncio.sleep(0.01)
    for i in range(4):
        await delete(client, f"Observation/o{i}")
    manifest = await wait(client, await kickoff(client, _type="Observation", _since=first["transactionTime"],
                                                _typeFilter=f"Observation?code=http://loinc.org|{HEART}"))
    assert manifest["output"] == []
    assert deleted_urls(await deleted_of(client, manifest)) == ["Observation/o1", "Observation/o3"]


async def test_since_export_without_deletions_has_an_empty_deleted_list(client):
    await put_all(client, patient("p0"))
    first = await wait(client, await kickoff(client, _type="Patient"))
    manifest = await wait(client, await kickoff(client, _type="Patient", _since=first["transactionTime"]))
    assert manifest["deleted"] == [] and manifest["output"] == []
