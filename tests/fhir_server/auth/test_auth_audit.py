"""Authentication events are audited: logins (accepted and refused) and issued tokens."""

from __future__ import annotations

import pytest

from tests.fhir_server.auth.smart_app import add_client, add_user, authorize_url, launch, login, pkce

pytestmark = pytest.mark.req("CN-4.4")


async def _auth_events(svc, client) -> list[dict]:
    await svc.auditor.flush()
    r = await client.get("/AuditEvent", params={"type": "http://dicom.nema.org/resources/ontology/DCM|110114"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def test_logins_and_tokens_are_recorded(svc, client, browser, patient_id):
    app_client = (await add_client(svc, scope="launch/patient patient/*.rs openid fhirUser"))[0]
    await add_user(svc, "doctor", "Practitioner/d1")
    verifier, challenge = pkce()
    refused = await login(browser, authorize_url("http://testserver", app_client["client_id"], "patient/*.rs",
                                                  challenge), "doctor", password="wrong")
    assert refused.status_code == 401
    await launch(browser, app_client["client_id"], "launch/patient patient/*.rs", "doctor", patient=patient_id)
    events = await _auth_events(svc, client)
    logins = [(e["outcome"], e["agent"][0]["who"]) for e in events if e["subtype"][0]["code"] == "110122"]
    assert ("4", {"identifier": {"system": "urn:telemed:user", "value": "doctor"}}) in logins
    assert ("0", {"reference": "Practitioner/d1"}) in logins
    issued = [e for e in events if e["subtype"][0]["code"] == "token"]
    assert len(issued) == 1 and issued[0]["agent"][1]["who"]["identifier"]["value"] == app_client["client_id"]
