"""The SQLite reader's statements use the indexes they are written for (no statistics to choose
by: a wrong plan walks a whole type or the whole history at a million resources), and the export
engine reads an SQLite store through it."""

from __future__ import annotations

import sqlite3

import pytest

from fhir_server.bulk import readers
from fhir_server.storage.sqlite import SQLiteStore


@pytest.fixture
def conn(tmp_path):
    import asyncio

    store = SQLiteStore(tmp_path / "s.sqlite3")  # the schema as the store makes it
    asyncio.run(store.close())
    c = sqlite3.connect(tmp_path / "s.sqlite3")
    yield c
    c.close()


def plan(conn, sql: str, args: tuple) -> str:
    return " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize("where, extra", [("", ()), (" AND +last_updated>? AND +last_updated<=?", ("a", "b"))])
def test_the_scan_walks_the_primary_key_in_id_order(conn, where, extra):
    sql = readers.SCAN.format(where=where)
    for one in (sql, readers.SCAN_JOINED.format(scan=sql)):
        p = plan(conn, one, ("Observation", "", "z", *extra, 10))
        assert "USING PRIMARY KEY (type=? AND id>?)" in p and "TEMP B-TREE" not in p, p


def test_changed_resources_are_found_by_the_type_last_updated_index(conn):
    for sql, args in ((readers.CHANGED, ("Observation", "t", "", 10)),
                      (readers.CHANGED_IN_RANGE.format(bound=""), ("Observation", "t", "")),
                      (readers.CHANGED_IN_RANGE.format(bound=" AND id<=?"), ("Observation", "t", "", "z"))):
        assert "INDEX resource_type_updated (type=? AND last_updated>?)" in plan(conn, sql, args)


def test_a_version_at_an_instant_is_found_by_the_version_index(conn):
    assert "INDEX history_version (type=? AND id=?)" in plan(conn, readers.VERSION_AT, ("Patient", "p1", "t"))


def test_deletions_are_found_by_the_last_updated_index(conn):
    p = plan(conn, readers.DELETIONS, ("a", "b", "a", 0, 10))
    assert "INDEX history_updated (last_updated>? AND last_updated<?)" in p and "TEMP B-TREE" not in p, p


def test_an_sqlite_store_is_read_by_the_sqlite_reader(tmp_path):
    import asyncio

    store = SQLiteStore(tmp_path / "s.sqlite3")
    reader = readers.for_store(store)
    try:
        assert isinstance(reader, readers.SQLiteReader)
    finally:
        reader.close()
        asyncio.run(store.close())
