"""Composition/$document: the protocol as a FHIR document Bundle."""

from __future__ import annotations

import pytest

from fhir_server.write import accept
from tests.operations.consult.conftest import as_, problem
from tests.operations.consult.signing import completed_form


@pytest.mark.req("SPB-3.6")
@pytest.mark.req("KZ-3")
async def test_the_document_holds_the_protocol_and_everything_it_references(desk):
    task, report_ref, protocol_ref = await completed_form(desk)
    r = await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "requester"))
    assert r.status_code == 200, r.text
    bundle = accept(r.json(), "Bundle", 64)  # valid FHIR R4
    assert bundle["type"] == "document" and bundle["identifier"]["value"].startswith("urn:uuid:")
    assert "timestamp" in bundle
    refs = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]
    assert refs[0] == protocol_ref
    assert set(refs[1:]) == {"Patient/p1", "PractitionerRole/consultant1-role", "Practitioner/consultant1",
                             "Organization/orgB", report_ref}
    assert f"Task/{task['id']}" not in refs  # workflow, not content
    assert all(e["fullUrl"].endswith(ref) for e, ref in zip(bundle["entry"], refs))


async def test_the_same_protocol_gives_the_same_document_identifier(desk):
    _, _, protocol_ref = await completed_form(desk)
    one = (await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "consultant1"))).json()
    two = (await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "consultant1"))).json()
    assert one["identifier"] == two["identifier"]


async def test_the_document_is_for_the_consultation_s_participants_only(desk):
    _, _, protocol_ref = await completed_form(desk)
    problem(await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "outsider")), 404, "not-found")
    problem(await desk.client.get("/Composition/nothing/$document", headers=as_(desk.app, "requester")), 404,
            "not-found")


async def test_a_composition_that_is_no_protocol_is_refused(desk, client):
    other = {"resourceType": "Composition", "id": "note", "status": "final", "type": {"text": "note"},
             "date": "2026-12-01", "author": [{"reference": "Practitioner/requester"}], "title": "A note"}
    assert (await client.put("/Composition/note", json=other)).status_code == 201
    problem(await client.get("/Composition/note/$document"), 422, "processing", "Composition/note")


@pytest.mark.req("CN-4.4")
async def test_handing_out_the_document_is_audited(desk, client, app):
    _, _, protocol_ref = await completed_form(desk)
    assert (await desk.client.get(f"/{protocol_ref}/$document", headers=as_(desk.app, "requester"))).status_code == 200
    await app.state.services.auditor.flush()
    events = [e["resource"] for e in (await client.get("/AuditEvent?entity=Patient/p1")).json().get("entry", [])]
    handed = [e for e in events if e["subtype"][0]["code"] == "operation"
              and any(x.get("what", {}).get("reference") == protocol_ref for x in e.get("entity", []))]
    assert any(e["agent"][0]["who"] == {"reference": "Practitioner/requester"} for e in handed), handed
