"""``store``: an open store on each adapter, so every test here runs on SQLite and on MongoDB."""

from __future__ import annotations

import os

import pytest
from pymongo import AsyncMongoClient

from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.sqlite import SQLiteStore
from tests.conftest import mongo_store_uri

REAL_MONGODB = bool(os.environ.get("MONGODB_URI"))


def mongodb_only(reason: str):
    """For a test only a real MongoDB can pass (a SecantusDB gap, named in ``reason``)."""

    def mark(fn):
        fn = pytest.mark.mongodb_only(fn)
        return pytest.mark.skipif(not REAL_MONGODB, reason=f"needs a real MongoDB (MONGODB_URI): {reason}")(fn)

    return mark


def mongodb_only_on(request, reason: str) -> None:
    """In a test on ``store``: its MongoDB run needs a real MongoDB (a SecantusDB gap, in ``reason``)."""
    if request.node.callspec.params.get("store") == "mongo":
        request.applymarker(pytest.mark.mongodb_only)
        if not REAL_MONGODB:
            pytest.skip(f"needs a real MongoDB (MONGODB_URI): {reason}")


@pytest.fixture
async def mongo_store(mongo_uri):
    uri = mongo_store_uri(mongo_uri)
    store = MongoStore(uri)
    await store.start()
    yield store
    await store.close()
    client = AsyncMongoClient(uri)
    await client.drop_database(client.get_default_database())
    await client.close()


@pytest.fixture
async def sqlite_store(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite3")
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "mongo"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")
