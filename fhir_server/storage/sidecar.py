"""A small SQLite database beside the embedded store, for state that is not FHIR data (the
authorization server's, notification delivery's): WAL, ``synchronous=FULL`` (what is written
survives a kill -9), one connection used from worker threads, one statement group at a time."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path


class SideDB:
    def __init__(self, path: Path, schema: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(schema)
        self._lock = threading.Lock()

    def run(self, fn, write: bool = False):
        """Run ``fn(connection)`` off the event loop; ``write``: inside one IMMEDIATE transaction."""
        def locked():
            with self._lock:
                if not write:
                    return fn(self._db)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                    self._db.execute("COMMIT")
                    return out
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return asyncio.to_thread(locked)

    async def close(self) -> None:
        await self.run(lambda db: db.close())
