"""The outbox: every committed version of a watched type, written in the change's own transaction
(both adapters)."""

from __future__ import annotations

import pytest

from fhir_server.search.plan import parse_query
from fhir_server.storage.port import VersionConflict
from fhir_server.write import new_version


def task(id: str, status: str = "requested") -> dict:
    return {"resourceType": "Task", "id": id, "status": status, "intent": "order"}


async def test_committed_versions_of_watched_types_are_outbox_entries_in_order(store):
    await store.commit([new_version(task("a"), "a", 1, "POST")])
    await store.commit([new_version(task("a", "cancelled"), "a", 2, "PUT"),
                        new_version({"resourceType": "Patient", "id": "p"}, "p", 1, "POST"),
                        new_version(task("b"), "b", 1, "POST")])
    changes = await store.changes(10)
    assert [(c.type, c.id, c.version) for c in changes] == [("Task", "a", 1), ("Task", "a", 2), ("Task", "b", 1)]
    assert all(c.at.endswith("Z") for c in changes)


async def test_a_commit_that_fails_leaves_no_entry(store):
    await store.commit([new_version(task("a"), "a", 1, "POST")])
    stale = new_version(task("a", "cancelled"), "a", 2, "PUT")
    await store.commit([stale])
    with pytest.raises(VersionConflict):  # expects version 1 again: a lost race
        await store.commit([new_version(task("a", "failed"), "a", 2, "PUT"), new_version(task("c"), "c", 1, "POST")])
    assert [(c.id, c.version) for c in await store.changes(10)] == [("a", 1), ("a", 2)]
    assert await store.read("Task", "c") is None


async def test_forgotten_entries_are_gone(store):
    for n in range(3):
        await store.commit([new_version(task(f"t{n}"), f"t{n}", 1, "POST")])
    first = await store.changes(2)
    await store.forget_changes([c.key for c in first])
    assert [c.id for c in await store.changes(10)] == ["t2"]


async def test_the_wal_stays_small_under_steady_reads(tmp_path, monkeypatch):
    """Writes of watched types while searches run and the dispatcher forgets outbox entries, as
    in a large load: the write-ahead log is started over once it passes its size instead of
    growing with every write (a million-Observation load grew it to tens of GB)."""
    import asyncio
    import os

    from fhir_server.storage import sqlite

    monkeypatch.setattr(sqlite, "WAL_KEEP_BYTES", 4 << 20)
    store = sqlite.SQLiteStore(tmp_path / "t.sqlite3")
    big = "x" * 20_000
    done = False

    async def write():
        nonlocal done
        for n in range(150):
            await store.commit([new_version({**task(f"t{n}-{i}"), "description": big}, f"t{n}-{i}", 1, "POST")
                                for i in range(5)])
            await store.read("Task", f"t{n // 2}-0")
        done = True

    async def dispatch():
        while not done:
            await store.forget_changes([c.key for c in await store.changes(100)])
            await asyncio.sleep(0.005)

    async def search():
        while not done:
            await store.search(parse_query("Task", [("status", "requested")]), count=50, cursor=None, total=True)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(write(), dispatch(), search(), search())
        await store.forget_changes([c.key for c in await store.changes(100)])
        assert await store.changes(10) == []
        # 30 MB written (each version's JSON in resource and history); the log stays near 4 MB
        assert os.path.getsize(store.path + "-wal") < 8 << 20
        assert len((await store.search(parse_query("Task", []), count=0, cursor=None, total=True)).entries) == 0
        assert (await store.search(parse_query("Task", []), count=0, cursor=None, total=True)).total == 750
    finally:
        await store.close()
