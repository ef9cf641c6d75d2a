"""The export is a snapshot as of transactionTime, while clients keep writing."""

from __future__ import annotations

import asyncio

import pytest

from tests.fhir_server.bulk.conftest import by_id, download, kickoff, observation, put_all, search_all, wait

pytestmark = pytest.mark.req("NAT-1")


async def write_while(client, done: asyncio.Event, deletes: bool) -> int:
    """Update, create (and delete) Observations until ``done``; the number of rounds."""
    n = 0
    while not done.is_set():
        await put_all(client, observation(f"o{n % 300}", "p0", valueQuantity={"value": 1000 + n}),
                      observation(f"new{n}", "p0"))
        if deletes:
            assert (await client.delete(f"Observation/o{299 - n % 300}")).status_code in (200, 204)
        n += 1
        await asyncio.sleep(0)
    return n


@pytest.mark.parametrize("filtered", [False, True], ids=["scan", "typeFilter"])
async def test_concurrent_writes_do_not_leak_into_the_export(client, filtered):
    await put_all(client, *[observation(f"o{i}", "p0", valueQuantity={"value": i}) for i in range(300)])
    before = by_id(await search_all(client, "Observation"))
    params = {"_typeFilter": "Observation?code=http://loinc.org|8867-4"} if filtered else {}
    url = await kickoff(client, _type="Observation", **params)
    done = asyncio.Event()
    writer = asyncio.create_task(write_while(client, done, deletes=not filtered))
    try:
        manifest = await wait(client, url)
    finally:
        done.set()
        rounds = await writer
    assert rounds > 3
    got = by_id((await download(client, manifest))["Observation"])
    assert got == before
    assert by_id(await search_all(client, "Observation")) != before  # the writer did change things
