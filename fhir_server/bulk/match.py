"""Whether one stored version (not necessarily the current one) matches export filters.

The search indexes hold current versions only, so a version as it was at ``transactionTime``
is matched by indexing it alone into an in-memory SQLite database of the same schema as the
embedded store and running the same compiled SQL there (``sqlite_search.compile_ids``): the
same semantics as a search, whatever the store. Chains, ``_has`` and ``_list`` are resolved
first against the store (``execute.resolve``), so they are judged on the current versions of
the resources they lead to.
"""

from __future__ import annotations

import sqlite3

import orjson

from fhir_server.search import execute
from fhir_server.search.extract import extract
from fhir_server.search.plan import parse_query
from fhir_server.storage import sqlite_search
from fhir_server.storage.port import Store, Stored


class Matcher:
    def __init__(self, store: Store, bound: int):
        from fhir_server.storage.sqlite import SCHEMA

        self.store, self.bound = store, bound
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.executescript(SCHEMA)

    async def matches(self, stored: Stored, queries: list[list]) -> bool:
        """Whether ``stored`` matches any of ``queries`` (lists of (name, value) search items)."""
        if stored.deleted:
            return False
        resource = orjson.loads(stored.json)
        conn = self.conn
        conn.execute("INSERT INTO resource (type, id, version, last_updated, deleted, json) VALUES (?,?,?,?,0,?)",
                     (stored.type, stored.id, stored.version, stored.last_updated, b""))
        sqlite_search.insert_index(conn, stored.type, stored.id, extract(resource))
        try:
            for items in queries:
                query = parse_query(stored.type, [tuple(i) for i in items] + [("_id", stored.id)], strict=True)
                resolved = await execute.resolve(self.store, query, self.bound)
                if resolved is None:
                    continue
                sql, args = sqlite_search.compile_ids(resolved, 1)
                if conn.execute(sql, args).fetchone() is not None:
                    return True
            return False
        finally:
            conn.execute("DELETE FROM resource")
            sqlite_search.delete_index(conn, stored.type, stored.id)

    def close(self) -> None:
        self.conn.close()
