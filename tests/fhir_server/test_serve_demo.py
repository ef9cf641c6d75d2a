"""`telemed serve --demo`: a real server process with the demo region, loaded once."""

from __future__ import annotations

import httpx

from fhir_server.demo import ORGANISATIONS, PATIENTS, PRACTITIONERS, load_demo
from fhir_server.settings import Settings
from tests.fhir_server.server_process import ServerProcess
from tests.tokens import auth


def test_serve_demo_answers_fhir_with_demo_data(tmp_path):
    server = ServerProcess(tmp_path / "data", None, "--demo").start()
    try:
        with httpx.Client(base_url=server.base, timeout=10, headers=server.headers) as client:
            meta = client.get("/metadata")
            assert meta.status_code == 200 and meta.json()["fhirVersion"] == "4.0.1"
            patients = client.get("/Patient", params={"_summary": "count"}).json()
            assert patients["total"] == len(PATIENTS)
            vitals = client.get("/Observation", params={"subject": f"Patient/{PATIENTS[0][0]}", "code": "http://loinc.org|8867-4"})
            assert len(vitals.json()["entry"]) == 5
            metrics = client.get(server.base.removesuffix("/fhir") + "/metrics")
            assert metrics.status_code == 200 and "fhir_requests_total" in metrics.text
    finally:
        server.stop()


async def test_demo_loads_once(tmp_path):
    settings = Settings(data=tmp_path)
    assert await load_demo(settings) is True
    assert await load_demo(settings) is False
    from fhir_server.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/fhir",
                                     headers=auth(app, base="http://t/fhir")) as client:
            orgs = (await client.get("/Organization", params={"_summary": "count"})).json()["total"]
            roles = (await client.get("/PractitionerRole", params={"_summary": "count"})).json()["total"]
            org1 = (await client.get(f"/Organization/{ORGANISATIONS[0][0]}/_history")).json()
    assert orgs == len(ORGANISATIONS) and roles == len(PRACTITIONERS)
    assert len(org1["entry"]) == 1  # the second load wrote no new version
