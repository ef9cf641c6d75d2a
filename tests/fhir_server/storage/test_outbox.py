"""The outbox: every committed version of a watched type, written in the change's own transaction
(both adapters)."""

from __future__ import annotations

import pytest

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
