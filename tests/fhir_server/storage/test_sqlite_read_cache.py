"""The embedded store's cache of current versions never serves a version older than a commit
this process acknowledged, and sees another process's commits within CHECK_OTHERS seconds."""

from __future__ import annotations

import asyncio

from fhir_server.storage import sqlite as sqlite_module
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.write import deletion, new_version


def _patient(family: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}]}


async def test_own_commits_are_read_back_at_once(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite3")
    try:
        await store.commit([new_version(_patient("One"), "p", 1, "POST")])
        assert (await store.read("Patient", "p")).version == 1  # now cached
        await store.commit([new_version(_patient("Two"), "p", 2, "PUT")])
        assert (await store.read("Patient", "p")).version == 2
        await store.commit([deletion(await store.read("Patient", "p"))])
        assert (await store.read("Patient", "p")).deleted
    finally:
        await store.close()


async def test_commits_of_another_process_are_seen_within_the_check_interval(tmp_path):
    server = SQLiteStore(tmp_path / "db.sqlite3")
    other = SQLiteStore(tmp_path / "db.sqlite3")  # e.g. `telemed load --data` beside a running server
    try:
        await server.commit([new_version(_patient("One"), "p", 1, "POST")])
        assert (await server.read("Patient", "p")).version == 1
        await other.commit([new_version(_patient("Two"), "p", 2, "PUT")])
        await asyncio.sleep(sqlite_module.CHECK_OTHERS * 1.5)
        assert (await server.read("Patient", "p")).version == 2
    finally:
        await other.close()
        await server.close()


async def test_the_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "CURRENT_CACHE_SIZE", 10)
    store = SQLiteStore(tmp_path / "db.sqlite3")
    try:
        await store.commit([new_version(_patient(str(i)), f"p{i}", 1, "POST") for i in range(25)])
        for i in range(25):
            assert (await store.read("Patient", f"p{i}")).id == f"p{i}"
        assert len(store._current) <= 10
    finally:
        await store.close()
