"""kill -9 of the server during a stream of creates loses no acknowledged write (embedded store)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from tests.fhir_server.server_process import ServerProcess


async def _stream_creates(server: ServerProcess, acknowledged: list[str], stop: asyncio.Event, writers: int = 8) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=10, headers=server.headers) as client:

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": f"{n}-{i}"}]}
                try:
                    r = await client.post("/Patient", json=body, headers={"Content-Type": "application/fhir+json"})
                except httpx.HTTPError:
                    return  # the server died mid-request: that write was never acknowledged
                if r.status_code == 201:
                    acknowledged.append(r.json()["id"])
                else:
                    raise AssertionError(f"create answered {r.status_code}: {r.text}")

        await asyncio.gather(*(writer(n) for n in range(writers)))


@pytest.mark.req("CN-4.4")
def test_kill_9_during_creates_loses_no_acknowledged_write(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    acknowledged: list[str] = []
    try:
        stop = asyncio.Event()

        async def run():
            task = asyncio.create_task(_stream_creates(server, acknowledged, stop))
            while len(acknowledged) < 300 and not task.done():
                await asyncio.sleep(0.01)
            # kill from another thread while requests are in flight
            threading.Thread(target=server.kill9).start()
            await asyncio.sleep(0.5)
            stop.set()
            await task

        asyncio.run(run())
    finally:
        server.stop()
    assert len(acknowledged) >= 300

    restarted = ServerProcess(data, server.port).start()
    try:
        with httpx.Client(base_url=restarted.base, timeout=10, headers=restarted.headers) as client:
            missing = [pid for pid in acknowledged if client.get(f"/Patient/{pid}").status_code != 200]
            total = client.get("/Patient", params={"_summary": "count"}).json()["total"]
    finally:
        restarted.stop()
    assert missing == []
    assert total >= len(acknowledged)
