"""Helpers for the REST interaction tests: resources as data, small HTTP helpers, assertions.

Every helper talks to the server over HTTP only (the ``client`` fixture of tests/conftest.py),
so the tests run unchanged on every storage adapter. "Nothing written" is checked through the
system history: a write of any kind adds a version there.
"""

from __future__ import annotations

import base64
import contextlib
import os
from typing import Any

import httpx
import orjson
import pytest

from tests.tokens import auth
from fhir_server.app import create_app

FHIR_JSON = "application/fhir+json"
JSON_HEADERS = {"Content-Type": FHIR_JSON}
SYS = "http://example.org/mrn"
LOINC = "http://loinc.org"


# --------------------------------------------------------------------------- resources as data


def patient(family: str = "Smith", *, mrn: str | None = None, **extra: Any) -> dict:
    res: dict = {"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}], "birthDate": "1970-01-01"}
    if mrn is not None:
        res["identifier"] = [{"system": SYS, "value": mrn}]
    res.update(extra)
    return res


def observation(subject: str | None = None, *, code: str = "8867-4", effective: str = "2024-05-03T10:00:00Z",
                **extra: Any) -> dict:
    res: dict = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": effective,
    }
    if subject is not None:
        res["subject"] = {"reference": subject}
    res.update(extra)
    return res


def without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


# --------------------------------------------------------------------------- HTTP helpers


async def post(client: httpx.AsyncClient, resource: dict, headers: dict | None = None) -> httpx.Response:
    return await client.post(f"/{resource['resourceType']}", json=resource, headers={**JSON_HEADERS, **(headers or {})})


async def create(client: httpx.AsyncClient, resource: dict) -> dict:
    """Create ``resource`` and return the stored version (asserting 201)."""
    r = await post(client, resource)
    assert r.status_code == 201, r.text
    return r.json()


async def put(client: httpx.AsyncClient, url: str, resource: dict, headers: dict | None = None) -> httpx.Response:
    return await client.put(url, json=resource, headers={**JSON_HEADERS, **(headers or {})})


async def update(client: httpx.AsyncClient, resource: dict) -> dict:
    r = await put(client, f"/{resource['resourceType']}/{resource['id']}", resource)
    assert r.status_code == 200, r.text
    return r.json()


async def delete(client: httpx.AsyncClient, url: str) -> None:
    r = await client.delete(url)
    assert r.status_code in (200, 204), r.text


async def post_bundle(client: httpx.AsyncClient, bundle: dict, headers: dict | None = None) -> httpx.Response:
    return await client.post("/", json=bundle, headers={**JSON_HEADERS, **(headers or {})})


async def follow(client: httpx.AsyncClient, url: str, params: dict | None = None, limit: int = 100) -> list[dict]:
    """Every page of a Bundle, following ``next`` links until there is none."""
    pages = []
    r = await client.get(url, params=params)
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return pages
        assert len(pages) < limit, "paging does not end"
        r = await client.get(nxt[0])


async def search(client: httpx.AsyncClient, type: str, params: dict | list | None = None) -> dict:
    r = await client.get(f"/{type}", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "searchset"
    return r.json()


def match_ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


async def search_ids(client: httpx.AsyncClient, type: str, params: dict | list | None = None) -> list[str]:
    """The ids of every match, over all pages."""
    ids = []
    for page in await follow(client, f"/{type}", params):
        ids += match_ids(page)
    return ids


async def history_entries(client: httpx.AsyncClient, path: str = "/_history", params: dict | None = None) -> list[dict]:
    """The entries of every page of a history. The server's own AuditEvents (one per access,
    some written a moment after the access) are left out: tests count the writes they made."""
    entries = []
    for page in await follow(client, path, params):
        assert page["type"] == "history"
        entries += [e for e in page.get("entry", []) if not e["fullUrl"].split("/")[-2] == "AuditEvent"]
    return entries


async def writes_so_far(client: httpx.AsyncClient) -> int:
    """How many versions the server holds (system history): unchanged means nothing was written."""
    return len(await history_entries(client, "/_history", {"_count": "1000"}))


async def read_json(client: httpx.AsyncClient, url: str) -> dict:
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- assertions


def assert_outcome(r: httpx.Response, status: int, code: str | None = None, expression: str | None = None) -> dict:
    """``r`` is an OperationOutcome with ``status``; some issue has ``code`` and names ``expression``."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text}"
    assert r.headers["content-type"].startswith(FHIR_JSON)
    oo = r.json()
    return assert_issue(oo, code, expression)


def assert_issue(oo: dict, code: str | None = None, expression: str | None = None) -> dict:
    assert oo["resourceType"] == "OperationOutcome", oo
    assert oo["issue"], oo
    issues = oo["issue"]
    if code is not None:
        assert any(i["code"] == code for i in issues), f"no issue with code {code!r}: {issues}"
    if expression is not None:
        wanted = [i for i in issues if code is None or i["code"] == code]
        exprs = [x for i in wanted for x in i.get("expression", [])]
        assert any(x == expression or x.startswith(expression) for x in exprs), \
            f"no issue naming {expression!r}: {issues}"
    return oo


# --------------------------------------------------------------------------- fixtures

REAL_MONGODB = bool(os.environ.get("MONGODB_URI"))


def mongodb_only_on(request, reason: str) -> None:
    """In a test on ``client``: its MongoDB run needs a real MongoDB (a SecantusDB gap, named in ``reason``)."""
    if request.node.callspec.params.get("settings") == "mongo":
        request.applymarker(pytest.mark.mongodb_only)
        if not REAL_MONGODB:
            pytest.skip(f"needs a real MongoDB (MONGODB_URI): {reason}")



def cursor(key: object) -> str:
    """A paging cursor as the stores spell them (URL-safe base64 of JSON), holding ``key``."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


@pytest.fixture
def make_client(settings):
    """An HTTP client over an app built from the test's settings with some of them overridden."""

    @contextlib.asynccontextmanager
    async def factory(**overrides):
        application = create_app(settings.model_copy(update=overrides))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir",
                                         headers=auth(application)) as c:
                yield c

    return factory
