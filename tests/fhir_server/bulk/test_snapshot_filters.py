"""Filtered exports (``_typeFilter``, Patient and Group compartments) match the snapshot version.

A resource that matched at transactionTime and was changed afterwards is exported as it was;
one that only matches after the change is not; none is exported twice, even when it changes
after the export has passed it. Registries rely on a consistent snapshot (NAT-1).
"""

from __future__ import annotations

import orjson
import pytest

from fhir_server.bulk import engine
from tests.fhir_server.bulk.conftest import ASYNC, by_id, download, kickoff, observation, patient, put_all, wait

pytestmark = pytest.mark.req("NAT-1")

HEART, TEMP = "8867-4", "8310-5"


def code_of(resource: dict) -> str:
    return resource["code"]["coding"][0]["code"]


async def test_type_filter_matches_the_version_at_transaction_time(app, client):
    await put_all(client, observation("was", "p0", code=HEART), observation("becomes", "p0", code=TEMP),
                  observation("gone", "p0", code=HEART), observation("kept", "p0", code=HEART))
    svc = app.state.services
    await svc.bulk.stop()  # the job waits while the resources change after transactionTime
    url = await kickoff(client, _type="Observation", _typeFilter=f"Observation?code=http://loinc.org|{HEART}")
    await put_all(client, observation("was", "p0", code=TEMP), observation("becomes", "p0", code=HEART),
                  observation("new", "p0", code=HEART))
    assert (await client.delete("Observation/gone")).status_code in (200, 204)
    await svc.bulk.start()
    got = (await download(client, await wait(client, url)))["Observation"]
    assert sorted(r["id"] for r in got) == ["gone", "kept", "was"]
    assert {code_of(r) for r in got} == {HEART}
    assert by_id(got)["was"]["meta"]["versionId"] == "1"


@pytest.mark.parametrize("path", ["Group/g/$export", "Patient/$export?patient=p1"])
async def test_compartment_export_matches_the_version_at_transaction_time(app, client, path):
    await put_all(client, patient("p1"), patient("p2"), observation("moved-away", "p1"), observation("moved-in", "p2"),
                  observation("stays", "p1"),
                  {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                   "member": [{"entity": {"reference": "Patient/p1"}}]})
    svc = app.state.services
    await svc.bulk.stop()
    if "?" in path:  # the patient parameter is POSTed
        body = {"resourceType": "Parameters", "parameter": [{"name": "patient",
                                                             "valueReference": {"reference": "Patient/p1"}}]}
        r = await client.post(path.split("?")[0], json=body, headers=ASYNC)
        assert r.status_code == 202, r.text
        url = r.headers["content-location"]
    else:
        url = await kickoff(client, path)
    await put_all(client, observation("moved-away", "p2"), observation("moved-in", "p1"), patient("p1", gender="other"))
    await svc.bulk.start()
    got = await download(client, await wait(client, url))
    assert sorted(r["id"] for r in got["Observation"]) == ["moved-away", "stays"]
    assert {r["subject"]["reference"] for r in got["Observation"]} == {"Patient/p1"}
    assert [r.get("gender") for r in got["Patient"]] == [None]  # p1 as it was


async def test_resources_changed_after_the_export_passed_them_are_exported_once(app, client):
    await put_all(client, *[observation(f"o{i:03d}", "p0", code=HEART if i % 2 else TEMP) for i in range(200)])
    svc = app.state.services
    await svc.bulk.stop()
    url = await kickoff(client, _type="Observation", _typeFilter=f"Observation?code=http://loinc.org|{HEART}")
    job_id = url.rsplit("/", 1)[1]
    batches = 0

    def stop_after_some() -> bool:
        nonlocal batches
        batches += 1
        return batches > 4

    record = svc.bulk.jobs.load(job_id)
    record["types"][0]["count"] = 10  # small pages: the job stops after 40 resources
    with pytest.raises(engine.Stopped):
        await engine.run(svc.store, svc.settings, record, svc.bulk.jobs.dir(job_id), svc.bulk.jobs.save,
                         should_stop=stop_after_some)
    record = svc.bulk.jobs.load(job_id)
    assert record["progress"] == 40
    # Every matching resource changes now: those exported already, and those not yet read.
    await put_all(client, *[observation(f"o{i:03d}", "p0", code=TEMP if i % 2 else HEART) for i in range(200)])
    await svc.bulk.start()
    got = (await download(client, await wait(client, url)))["Observation"]
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == 100
    assert set(ids) == {f"o{i:03d}" for i in range(1, 200, 2)}
    assert {code_of(r) for r in got} == {HEART} and {r["meta"]["versionId"] for r in got} == {"1"}


async def test_elements_and_filters_apply_to_the_snapshot_version(app, client):
    await put_all(client, observation("x", "p0", code=HEART, valueQuantity={"value": 1}))
    svc = app.state.services
    await svc.bulk.stop()
    url = await kickoff(client, _type="Observation", _elements="code",
                        _typeFilter=f"Observation?code=http://loinc.org|{HEART}")
    await put_all(client, observation("x", "p0", code=TEMP))
    await svc.bulk.start()
    got = (await download(client, await wait(client, url)))["Observation"]
    assert [code_of(r) for r in got] == [HEART] and "valueQuantity" not in got[0]
    assert orjson.dumps(got[0]["meta"]["tag"]).count(b"SUBSETTED") == 1


async def test_ored_type_filters_are_judged_on_the_snapshot_and_export_once(app, client):
    await put_all(client, observation("both", "p0", code=HEART), observation("late", "p0", code=TEMP),
                  observation("prelim", "p0", code=TEMP, status="preliminary"))
    svc = app.state.services
    await svc.bulk.stop()
    url = await kickoff(client, _type="Observation",
                        _typeFilter=f"Observation?code=http://loinc.org|{HEART},Observation?status=preliminary")
    await put_all(client, observation("both", "p0", code=TEMP, status="preliminary"),
                  observation("late", "p0", code=TEMP, status="preliminary"),
                  observation("prelim", "p0", code=HEART))
    await svc.bulk.start()
    got = (await download(client, await wait(client, url)))["Observation"]
    assert sorted(r["id"] for r in got) == ["both", "prelim"]
    assert {(r["id"], code_of(r), r["status"]) for r in got} == {("both", HEART, "final"),
                                                                  ("prelim", TEMP, "preliminary")}
