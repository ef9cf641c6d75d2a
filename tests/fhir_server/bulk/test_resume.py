"""Jobs are durable: stopped mid-run (a restart, a kill -9), they resume to the same result."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.bulk import engine
from tests.fhir_server.bulk.conftest import ASYNC, by_id, download, kickoff, observation, patient, put_all, search_all, wait
from tests.fhir_server.server_process import ServerProcess
from tests.tokens import auth

pytestmark = pytest.mark.req("NAT-1")


async def test_a_job_stopped_mid_run_resumes_after_a_restart_to_the_same_result(app, client, settings):
    await put_all(client, *[patient(f"p{i}") for i in range(40)],
                  *[observation(f"o{i}", f"p{i % 40}") for i in range(400)])
    svc = app.state.services
    await svc.bulk.stop()  # this app's workers stay off: the test runs the job by hand
    url = await kickoff(client, _type="Patient,Observation")
    job_id = url.rsplit("/", 1)[1]
    batches = 0

    def stop_after_some() -> bool:
        nonlocal batches
        batches += 1
        return batches > 12

    record = svc.bulk.jobs.load(job_id)
    with pytest.raises(engine.Stopped):
        await engine.run(svc.store, svc.settings, record, svc.bulk.jobs.dir(job_id), svc.bulk.jobs.save,
                         should_stop=stop_after_some)
    stopped = svc.bulk.jobs.load(job_id)
    assert stopped["state"] == "running" and stopped["progress"] > 0
    # A crash mid-batch: lines past the checkpoint in the last part, and a part not yet recorded.
    parts = [p for t in stopped["types"] for p in t["parts"]]
    with open(svc.bulk.jobs.dir(job_id) / parts[-1]["name"], "ab") as f:
        f.write(b'{"resourceType":"Observation","id":"half-writ')
    (svc.bulk.jobs.dir(job_id) / "Observation-99.ndjson").write_bytes(b"{}\n")

    restarted = create_app(settings)  # a new process on the same data: its workers take the job over
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir",
                                     headers=auth(restarted)) as again:
            manifest = await wait(again, url)
            got = await download(again, manifest)
            assert by_id(got["Observation"]) == by_id(await search_all(again, "Observation"))
            assert len(got["Observation"]) == 400 and len(got["Patient"]) == 40


def test_a_killed_server_resumes_its_job_after_restart(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {"TELEMED_BULK_BATCH_BYTES": "1000", "TELEMED_BULK_FILE_MAX_BYTES": "20000"}
    server = ServerProcess(data, None, env=env).start()
    try:
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as c:
            for start in range(0, 3000, 500):
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": observation(f"o{i}", "p0"), "request": {"method": "PUT", "url": f"Observation/o{i}"}}
                    for i in range(start, start + 500)]}
                assert c.post("", json=bundle).status_code == 200
            r = c.get("$export?_type=Observation", headers=ASYNC)
            assert r.status_code == 202
            url = r.headers["content-location"]
            deadline = time.time() + 30
            while True:
                r = c.get(url)
                assert r.status_code == 202, "the job completed before the kill"
                if not r.headers["x-progress"].endswith(" 0 resources"):
                    break
                assert time.time() < deadline
                time.sleep(0.01)
        server.kill9()
        server = ServerProcess(data, server.port, env=env).start()
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as c:
            deadline = time.time() + 60
            while (r := c.get(url)).status_code == 202:
                assert time.time() < deadline
                time.sleep(0.1)
            assert r.status_code == 200, r.text
            ids = []
            for item in r.json()["output"]:
                lines = c.get(item["url"]).content.splitlines()
                assert len(lines) == item["count"]
                ids += [httpx.Response(200, content=line).json()["id"] for line in lines]
            assert sorted(ids) == sorted(f"o{i}" for i in range(3000))
    finally:
        server.stop()
