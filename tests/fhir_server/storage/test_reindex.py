"""Reindexing: resources written without (part of) their index become findable; versions stay
(both adapters), and ``telemed reindex`` does it for a whole store."""

from __future__ import annotations

import subprocess
import sys

from fhir_server.search.plan import parse_query
from fhir_server.search.values import IndexValues
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.write import new_version


def observation(id: str, code: str) -> dict:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "subject": {"reference": "Patient/p1"}}


async def _old(store, n: int) -> None:
    """Resources as an older server wrote them: stored, but with no index values."""
    for i in range(n):
        w = new_version(observation(f"o{i:03}", "8867-4"), f"o{i:03}", 1, "POST")
        w.index = IndexValues()
        await store.commit([w])


async def _found(store, *items) -> list[str]:
    page = await store.search(parse_query("Observation", list(items), strict=True), count=100, cursor=None, total=False)
    return [s.id for s in page.entries]


async def test_reindex_makes_old_resources_findable_without_new_versions(store):
    await _old(store, 7)
    assert await _found(store, ("code", "8867-4")) == []
    after, batches = None, 0
    while (after := await store.reindex("Observation", after, 3)) is not None:
        batches += 1
    assert batches == 3
    assert await _found(store, ("code", "8867-4")) == [f"o{i:03}" for i in range(7)]
    assert await _found(store, ("subject", "Patient/p1")) == [f"o{i:03}" for i in range(7)]
    assert (await store.read("Observation", "o003")).version == 1
    assert await store.referrers(["Patient/p1"], 10)  # reference lookups see them too


async def test_reindex_keeps_a_newer_version_index(store):
    await _old(store, 1)
    newer = new_version(observation("o000", "1234-5"), "o000", 2, "PUT")
    await store.commit([newer])
    await store.reindex("Observation", None, 10)
    assert await _found(store, ("code", "1234-5")) == ["o000"]
    assert await _found(store, ("code", "8867-4")) == []


async def test_telemed_reindex_command(tmp_path):
    store = SQLiteStore(tmp_path / "telemed.sqlite3")
    await _old(store, 5)
    await store.close()
    done = subprocess.run([sys.executable, "-m", "fhir_server.cli", "reindex", "--data", str(tmp_path),
                           "--type", "Observation,Patient"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Observation" in done.stdout
    store = SQLiteStore(tmp_path / "telemed.sqlite3")
    try:
        assert len(await _found(store, ("code", "8867-4"))) == 5
    finally:
        await store.close()
    bad = subprocess.run([sys.executable, "-m", "fhir_server.cli", "reindex", "--data", str(tmp_path), "--type", "Nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Nope" in bad.stdout + bad.stderr
