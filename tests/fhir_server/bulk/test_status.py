"""Status polling, cancellation, who may download, gzip, expiry."""

from __future__ import annotations

import asyncio
import time

import pytest

from fhir_server.settings import Settings
from tests.fhir_server.bulk.conftest import (by_id, download, gunzip, kickoff, observation, patient, put_all,
                                             search_all, wait)
from tests.tokens import auth


async def seed_many(client, n: int = 1500) -> None:
    for start in range(0, n, 500):
        await put_all(client, *[observation(f"o{i}", "p0") for i in range(start, min(n, start + 500))])


def job_dir(app, url: str):
    return app.state.services.settings.bulk_path() / url.rsplit("/", 1)[1]


async def test_status_is_202_with_progress_until_complete(client):
    await seed_many(client, 300)
    url = await kickoff(client, _type="Observation")
    r = await client.get(url)
    assert r.status_code == 202
    assert r.headers["retry-after"] == "1" and "resources" in r.headers["x-progress"]
    manifest = await wait(client, url)
    r = await client.get(url)
    assert r.status_code == 200 and r.headers["expires"].endswith("GMT")
    assert sum(o["count"] for o in manifest["output"]) == 300


async def test_delete_cancels_a_running_job_and_deletes_its_files(app, client):
    await seed_many(client)
    url = await kickoff(client, _type="Observation")
    deadline = time.time() + 30
    while True:  # until it has exported something, but not everything
        r = await client.get(url)
        assert r.status_code == 202, "the job completed before it could be cancelled"
        if not r.headers["x-progress"].endswith(" 0 resources"):
            break
        assert time.time() < deadline
        await asyncio.sleep(0.01)
    r = await client.delete(url)
    assert r.status_code == 202
    assert (await client.get(url)).status_code == 404
    while job_dir(app, url).exists():
        assert time.time() < deadline
        await asyncio.sleep(0.05)
    assert (await client.delete(url)).status_code == 404


async def test_cancel_before_the_job_starts_deletes_it_at_once(app, client):
    url = await kickoff(client, _type="Patient")
    assert (await client.delete(url)).status_code == 202
    assert (await client.get(url)).status_code == 404


async def test_another_client_may_not_poll_cancel_or_download(app, client):
    await put_all(client, patient("p0"))
    url = await kickoff(client, _type="Patient")
    manifest = await wait(client, url)
    other = auth(app, "system/*.*", client_id="someone-else", sub="someone-else")
    assert (await client.get(url, headers=other)).status_code == 403
    assert (await client.delete(url, headers=other)).status_code == 403
    assert (await client.get(manifest["output"][0]["url"], headers=other)).status_code == 403
    assert (await client.get(manifest["output"][0]["url"], headers={"Authorization": ""})).status_code == 401


async def test_download_is_gzipped_when_accepted(client):
    await put_all(client, *[patient(f"p{i}", gender="male") for i in range(20)])
    manifest = await wait(client, await kickoff(client, _type="Patient"))
    file_url = manifest["output"][0]["url"]
    plain = await client.get(file_url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    async with client.stream("GET", file_url, headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert gunzip(raw) == plain.content and len(raw) < len(plain.content)


async def test_unknown_job_and_file_are_404(client):
    assert (await client.get("bulk-status/0123456789abcdef0123456789abcdef")).status_code == 404
    assert (await client.get("bulk-status/not-a-job")).status_code == 404
    await put_all(client, patient("p0"))
    manifest = await wait(client, await kickoff(client, _type="Patient"))
    base = manifest["output"][0]["url"].rsplit("/", 1)[0]
    assert (await client.get(f"{base}/job.json")).status_code == 404
    assert (await client.get(f"{base}/Observation-9.ndjson")).status_code == 404


@pytest.fixture
def settings(settings) -> Settings:  # files expire after one second
    return settings.model_copy(update={"bulk_file_ttl_seconds": 1})


async def test_files_expire_and_are_deleted(app, client):
    await put_all(client, patient("p0"))
    url = await kickoff(client, _type="Patient")
    manifest = await wait(client, url)
    assert by_id((await download(client, manifest))["Patient"]) == by_id(await search_all(client, "Patient"))
    deadline = time.time() + 10
    while job_dir(app, url).exists():
        assert time.time() < deadline
        await asyncio.sleep(0.1)
    assert (await client.get(url)).status_code == 404
    assert (await client.get(manifest["output"][0]["url"])).status_code == 404
