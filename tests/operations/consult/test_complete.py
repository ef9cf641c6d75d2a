"""Task/$complete: the owner writes the conclusion (a DiagnosticReport) and the protocol (a
Composition) from the form, or uploads a scanned signed conclusion; the Task awaits signatures."""

from __future__ import annotations

import pytest

from operations.consult.conclusion import CONCLUSION, PROTOCOL, SECTION
from tests.operations.consult.conftest import as_, problem, ref
from tests.operations.consult.signing import FORM, ICD10, accepted, completed_form


async def _read(desk, path: str, who: str = "requester") -> dict:
    r = await desk.client.get(f"/{path}", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.req("RU-24")
@pytest.mark.req("KZ-3")
@pytest.mark.req("SPB-3.6")
async def test_the_form_becomes_a_conclusion_and_a_protocol_awaiting_signatures(desk):
    task, report_ref, protocol_ref = await completed_form(desk)
    assert task["status"] == "in-progress"
    assert task["businessStatus"]["coding"][0]["code"] == "awaiting-signatures"
    report = await _read(desk, report_ref)
    assert report["meta"]["profile"] == [CONCLUSION] and report["status"] == "preliminary"
    assert report["basedOn"] == [ref("ServiceRequest/sr1")] and report["subject"] == ref("Patient/p1")
    assert report["performer"] == [ref("PractitionerRole/consultant1-role")]
    assert report["conclusion"] == "Marked improvement"
    assert report["conclusionCode"][0]["coding"][0] == {"system": ICD10, "code": "I69.3",
                                                        "display": "Sequelae of cerebral infarction"}
    protocol = await _read(desk, protocol_ref)
    assert protocol["meta"]["profile"] == [PROTOCOL] and protocol["status"] == "preliminary"
    assert protocol["identifier"]["value"].endswith(task["id"][:8]) and protocol["subject"] == ref("Patient/p1")
    assert [(a["mode"], a["party"]) for a in protocol["attester"]] == [
        ("professional", ref("PractitionerRole/consultant1-role")), ("official", ref("Organization/orgB"))]
    assert protocol["custodian"] == ref("Organization/orgB")
    assert protocol["event"][0]["detail"] == [ref(f"Task/{task['id']}")]
    sections = {s["code"]["coding"][0]["code"]: s for s in protocol["section"]}
    assert list(sections) == ["complaints", "anamnesis", "diagnosis", "conclusion", "examination-plan", "treatment",
                              "recommendations"]
    assert all(s["code"]["coding"][0]["system"] == SECTION for s in protocol["section"])
    assert "Headache, fatigue, poor sleep" in sections["complaints"]["text"]["div"]
    assert sections["conclusion"]["entry"] == [ref(report_ref)]


@pytest.mark.req("CN-3.3")
async def test_treatment_is_advice_in_the_protocol_and_orders_nothing(desk, client):
    _, _, protocol_ref = await completed_form(desk)
    protocol = await _read(desk, protocol_ref)
    treatment = next(s for s in protocol["section"] if s["code"]["coding"][0]["code"] == "treatment")
    assert "Continue rehabilitation" in treatment["text"]["div"]
    # the requester decides: nothing was prescribed or planned for the patient
    for type in ("MedicationRequest", "CarePlan"):
        assert (await client.get(f"/{type}?subject=Patient/p1")).json().get("total", 0) == 0


@pytest.mark.req("SPB-3.6")
async def test_a_scanned_signed_conclusion_can_be_uploaded_instead_of_the_form(desk):
    scan = {"contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "Conclusion (signed by hand)"}
    _, report_ref, protocol_ref = await completed_form(desk, attachment=scan)
    report = await _read(desk, report_ref)
    assert report["presentedForm"] == [scan] and "conclusion" not in report
    protocol = await _read(desk, protocol_ref)
    assert [s["code"]["coding"][0]["code"] for s in protocol["section"]] == ["conclusion"]


@pytest.mark.req("SPB-3.6")
async def test_the_form_s_required_fields(desk):
    task = await accepted(desk)
    without = {k: v for k, v in FORM.items() if k != "conclusion"}
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **without), 400, "required",
            "Parameters.parameter.where(name='conclusion')")
    without = {k: v for k, v in FORM.items() if k != "diagnosis"}
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **without), 400, "required",
            "Parameters.parameter.where(name='diagnosis')")


@pytest.mark.req("KZ-3")
async def test_the_diagnosis_must_be_an_icd10_code(desk):
    task = await accepted(desk)
    wrong = {**FORM, "diagnosis": {"system": ICD10, "code": "Q99.99"}}
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **wrong), 400, "code-invalid",
            "Parameters.parameter.where(name='diagnosis')[0]")
    other = {**FORM, "diagnosis": {"system": "http://snomed.info/sct", "code": "22298006"}}
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **other), 400, "invalid")


async def test_only_the_owner_completes_an_in_progress_consultation(desk):
    task = await desk.submit()
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **FORM), 409, "conflict", "Task.status")
    await desk.op("consultant1", f"Task/{task['id']}/$accept")
    problem(await desk.op("requester", f"Task/{task['id']}/$complete", **FORM), 403, "forbidden")
    problem(await desk.op("outsider", f"Task/{task['id']}/$complete", **FORM), 404, "not-found")


async def test_completing_again_before_any_signature_replaces_the_results(desk):
    task, report_ref, protocol_ref = await completed_form(desk)
    r = await desk.op("consultant1", f"Task/{task['id']}/$complete", **{**FORM, "conclusion": "Revised"})
    assert r.status_code == 200, r.text
    outputs = [o["valueReference"]["reference"] for o in r.json()["output"]]
    assert outputs == [report_ref, protocol_ref]
    report = await _read(desk, report_ref)
    assert report["conclusion"] == "Revised" and report["meta"]["versionId"] == "2"


async def test_results_and_outputs_change_only_through_the_operations(desk, client):
    task, report_ref, protocol_ref = await completed_form(desk)
    protocol = await _read(desk, protocol_ref, "consultant1")
    protocol["title"] = "edited"
    problem(await client.put(f"/{protocol_ref}", json=protocol, headers=as_(desk.app, "consultant1")), 422,
            "processing", "Composition")
    current = (await desk.task(task["id"], "consultant1")).json()
    del current["output"]
    problem(await client.put(f"/Task/{task['id']}", json=current, headers=as_(desk.app, "consultant1")), 422,
            "processing", "Task.output")
