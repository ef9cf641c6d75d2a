"""The server under benchmark plus its floors, in one process.

- ``GET /floor/read``: the same bytes a FHIR read returns, from memory.
- ``POST /floor/create``: parse the JSON body and insert it as one row into SQLite (WAL,
  synchronous=FULL like the store) with one commit.
Run: python bench/rest_server.py --data DIR --port PORT
"""

from __future__ import annotations

import argparse
import sqlite3
import uuid
from pathlib import Path

import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.app import create_app
from fhir_server.settings import Settings


def build(data: Path):
    app = create_app(Settings(data=data))
    floor_bytes: dict[str, bytes] = {}
    conn = sqlite3.connect(str(data / "floor.sqlite3"), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS r (id TEXT PRIMARY KEY, json BLOB)")

    async def set_read(request: Request) -> Response:
        floor_bytes["read"] = await request.body()
        return Response(b"", 204)

    async def floor_read(request: Request) -> Response:
        return Response(floor_bytes["read"], media_type="application/fhir+json; charset=utf-8",
                        headers={"ETag": 'W/"1"', "Last-Modified": "Mon, 23 Nov 2026 16:00:00 GMT"})

    async def floor_create(request: Request) -> Response:
        body = orjson.loads(await request.body())
        id = str(uuid.uuid4())
        body["id"] = id
        conn.execute("BEGIN")
        conn.execute("INSERT INTO r VALUES (?, ?)", (id, orjson.dumps(body)))
        conn.execute("COMMIT")
        return Response(orjson.dumps(body), 201, media_type="application/fhir+json; charset=utf-8")

    app.router.routes[0:0] = [
        Route("/floor/read", floor_read, methods=["GET"]),
        Route("/floor/read", set_read, methods=["PUT"]),
        Route("/floor/create", floor_create, methods=["POST"]),
    ]
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--port", type=int, default=8090)
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    uvicorn.run(build(args.data), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
