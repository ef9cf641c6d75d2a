"""Bulk export tests: small files and batches (so parts split and jobs take many batches), both stores."""

from __future__ import annotations

import asyncio
import gzip
import time
from urllib.parse import urlencode

import orjson
import pytest

from fhir_server.settings import Settings
from tests.conftest import STORES, mongo_store_uri

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(params=STORES)
def settings(request, tmp_path) -> Settings:
    small = {"bulk_file_max_bytes": 4000, "bulk_batch_bytes": 2000}
    if request.param == "mongo":
        return Settings(data=tmp_path, store=mongo_store_uri(request.getfixturevalue("mongo_uri")), **small)
    return Settings(data=tmp_path, **small)


async def kickoff(client, path: str = "$export", headers: dict | None = None, **params) -> str:
    r = await client.get(f"{path}?{urlencode(params)}" if params else path, headers={**ASYNC, **(headers or {})})
    assert r.status_code == 202, r.text
    return r.headers["content-location"]


async def wait(client, status_url: str, headers: dict | None = None, seconds: float = 60) -> dict:
    deadline = time.time() + seconds
    while time.time() < deadline:
        r = await client.get(status_url, headers=headers or {})
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"] and r.headers["retry-after"]
        await asyncio.sleep(0.05)
    raise AssertionError("the export did not complete")


async def download(client, manifest: dict, headers: dict | None = None) -> dict[str, list[dict]]:
    """Every output file's resources by type (checking each file's count and type)."""
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        r = await client.get(item["url"], headers=headers or {})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert len(lines) == item["count"] and {x["resourceType"] for x in lines} == {item["type"]}
        out.setdefault(item["type"], []).extend(lines)
    return out


async def search_all(client, type: str, **params) -> list[dict]:
    out, url = [], f"{type}?{urlencode({'_count': 1000, **params})}"
    while url:
        bundle = (await client.get(url)).json()
        out += [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return out


def by_id(resources: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in resources}


def gunzip(body: bytes) -> bytes:
    return gzip.decompress(body)


def patient(id: str, **fields) -> dict:
    return {"resourceType": "Patient", "id": id, **fields}


def observation(id: str, patient: str, code: str = "8867-4", **fields) -> dict:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, **fields}


async def put_all(client, *resources: dict) -> None:
    """Write resources in one transaction (ids as given)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
