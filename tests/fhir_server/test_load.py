"""telemed load: real Synthea bulk data (conditional references) and bundles through the write path."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.load import Loader, expand

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "synthea-10-patients"


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


@pytest.mark.skipif(not SYNTHEA.exists(), reason="the shared Synthea data set is not beside the repository")
async def test_loads_synthea_ndjson_resolving_conditional_references(client):
    files = [f for f in expand([SYNTHEA]) if f.name != "log.ndjson"]
    summary = await Loader(client, chunk=200, concurrency=4).load(files)
    expected = sum(_lines(f) for f in files)
    assert summary.rejected == []
    assert summary.loaded == expected
    # an Encounter's conditional references became literal references to loaded resources
    enc = json.loads((SYNTHEA / "Encounter.000.ndjson").read_text().splitlines()[0])
    stored = (await client.get(f"/Encounter/{enc['id']}")).json()
    practitioner = stored["participant"][0]["individual"]["reference"]
    assert practitioner.startswith("Practitioner/") and "?" not in practitioner
    assert (await client.get(f"/{practitioner}")).status_code == 200
    r = await client.get("/Encounter", params={"subject": enc["subject"]["reference"], "_summary": "count"})
    assert r.json()["total"] == sum(
        1 for line in (SYNTHEA / "Encounter.000.ndjson").read_text().splitlines()
        if json.loads(line)["subject"]["reference"] == enc["subject"]["reference"]
    )


async def test_reports_rejected_lines_with_reasons_and_loads_the_rest(client, tmp_path):
    f = tmp_path / "Patient.ndjson"
    f.write_text("\n".join([
        json.dumps({"resourceType": "Patient", "id": "ok-1", "gender": "female"}),
        "{not json",
        json.dumps({"resourceType": "Patient", "id": "bad-1", "gender": "woman"}),
        json.dumps({"resourceType": "Patient", "id": "bad-2", "birthDate": "yesterday"}),
    ]) + "\n")
    summary = await Loader(client).load([f])
    assert summary.loaded == 1
    reasons = dict(summary.rejected)
    assert set(reasons) == {"Patient.ndjson:2", "Patient.ndjson:3", "Patient.ndjson:4"}
    assert "JSON" in reasons["Patient.ndjson:2"]
    assert "gender" in reasons["Patient.ndjson:3"]
    assert (await client.get("/Patient/ok-1")).status_code == 200
    assert (await client.get("/Patient/bad-1")).status_code == 404


async def test_loads_a_transaction_bundle_file(client, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Bundled"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    f = tmp_path / "tx.json"
    f.write_bytes(orjson.dumps(bundle))
    summary = await Loader(client).load([f])
    assert summary.loaded == 2 and summary.rejected == []
    obs = (await client.get("/Observation")).json()["entry"][0]["resource"]
    assert (await client.get(f"/{obs['subject']['reference']}")).json()["name"][0]["family"] == "Bundled"


def test_cli_load_prints_summary_and_data_is_persisted(tmp_path):
    f = tmp_path / "Patient.ndjson"
    f.write_text(json.dumps({"resourceType": "Patient", "id": "cli-1"}) + "\n")
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["load", str(f), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "loaded: 1" in result.output and "rejected: 0" in result.output
    assert (data / "telemed.sqlite3").exists()


def test_cli_load_refuses_missing_path(tmp_path):
    result = CliRunner().invoke(cli, ["load", str(tmp_path / "nope.ndjson"), "--data", str(tmp_path)])
    assert result.exit_code == 2


async def test_ndjson_chunks_in_flight_stay_bounded(tmp_path, monkeypatch):
    """Reading waits for a free slot: a file of any size never has more than `concurrency` chunks read ahead."""
    import asyncio

    import httpx

    from fhir_server import load as load_module

    f = tmp_path / "Patient.ndjson"
    f.write_text("".join(json.dumps({"resourceType": "Patient", "id": f"p{i}"}) + "\n" for i in range(100)))
    read = {"lines": 0}
    real_ndjson = load_module.ndjson

    def counting(path):
        for item in real_ndjson(path):
            read["lines"] += 1
            yield item

    monkeypatch.setattr(load_module, "ndjson", counting)
    state = {"now": 0, "max": 0, "read_ahead": 0, "done": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        n = len(json.loads(request.content)["entry"])
        state["read_ahead"] = max(state["read_ahead"], read["lines"] - state["done"])
        state["done"] += n
        state["now"] -= 1
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response",
                                         "entry": [{"response": {"status": "201 Created"}}] * n})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x/fhir") as client:
        summary = await Loader(client, chunk=10, concurrency=2).load([f])
    assert summary.loaded == 100
    assert state["max"] == 2
    assert state["read_ahead"] <= 10 * 3  # read but not yet loaded: two chunks in flight, one being filled


def test_load_into_a_running_server_with_a_token(tmp_path):
    """`telemed load --url ... --token ...` over real HTTP; without the token the server refuses."""
    import httpx

    from tests.fhir_server.server_process import ServerProcess

    f = tmp_path / "Patient.ndjson"
    f.write_text("".join(json.dumps({"resourceType": "Patient", "id": f"u{i}"}) + "\n" for i in range(5)))
    server = ServerProcess(tmp_path / "data").start()
    try:
        token = server.headers["Authorization"].removeprefix("Bearer ")
        refused = CliRunner().invoke(cli, ["load", str(f), "--url", server.base])
        assert refused.exit_code == 1 and "requires an access token" in refused.output
        result = CliRunner().invoke(cli, ["load", str(f), "--url", server.base, "--token", token])
        assert result.exit_code == 0, result.output
        r = httpx.get(f"{server.base}/Patient", params={"_summary": "count"}, headers=server.headers)
        assert r.json()["total"] == 5
    finally:
        server.stop()
