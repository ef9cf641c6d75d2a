"""profiles.validator: each profile's valid example passes; each kind of rule fails with the
issue code and the element's FHIRPath expression (422)."""

from __future__ import annotations

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.write import accept
from profiles import validator
from tests.profiles.examples import (SD, consult_conclusion, consult_message, consult_protocol, consult_task, section,
                                     telemed_request, without)


def issues(resource: dict) -> list[tuple[str, str]]:
    """(code, expression) of every issue; [] when the resource passes."""
    accept(resource, None, 64)  # the examples are valid base FHIR R4 first
    try:
        validator.check(resource)
    except OperationOutcomeError as exc:
        assert exc.status == 422
        return [(i["code"], i["expression"][0]) for i in exc.issues]
    return []


@pytest.mark.parametrize("example", [telemed_request, consult_task, consult_conclusion, consult_protocol,
                                     consult_message])
def test_the_valid_example_of_each_profile_passes(example):
    assert issues(example()) == []


def test_a_resource_claiming_no_profile_of_ours_is_not_checked():
    assert issues(without(telemed_request(priority="asap"), "meta")) == []
    foreign = telemed_request(priority="asap", meta={"profile": ["http://example.org/StructureDefinition/x"]})
    assert issues(foreign) == []


def test_an_unknown_profile_of_ours_is_refused():
    assert issues(telemed_request(meta={"profile": [f"{SD}/NoSuchProfile"]})) == [
        ("processing", "ServiceRequest.meta.profile[0]")]
    assert issues(consult_task(meta={"profile": [f"{SD}/TelemedRequest"]})) == [("processing", "Task.meta.profile[0]")]


# --- TelemedRequest ---------------------------------------------------------------------------------

@pytest.mark.req("SPB-D")
def test_a_draft_may_be_incomplete():
    draft = without(telemed_request(status="draft"), "priority", "reasonCode", "occurrencePeriod", "performerType",
                    "supportingInfo", "extension", "code")
    assert issues(draft) == []


@pytest.mark.req("RU-14")
def test_a_submitted_request_needs_a_form_of_care():
    assert issues(without(telemed_request(), "priority")) == [("invariant", "ServiceRequest.priority")]
    assert issues(telemed_request(priority="asap")) == [("code-invalid", "ServiceRequest.priority")]
    assert issues(telemed_request(status="draft", priority="asap")) == [("code-invalid", "ServiceRequest.priority")]


@pytest.mark.req("RU-2")
@pytest.mark.req("UA-4")
def test_a_submitted_request_states_its_purpose():
    reason = [{"text": "Chest pain after stenting"}]
    assert issues(telemed_request(reasonCode=reason)) == [("invariant", "ServiceRequest.reasonCode")]
    wrong = [{"coding": [{"system": f"{SD.rsplit('/', 1)[0]}/CodeSystem/consultation-purpose", "code": "fun"}]}]
    assert ("code-invalid", "ServiceRequest.reasonCode[0]") in issues(telemed_request(reasonCode=wrong))


@pytest.mark.req("CN-3.1")
@pytest.mark.parametrize("missing,expression", [
    (("occurrencePeriod",), "ServiceRequest.occurrence"),
    (("performerType",), "ServiceRequest.performerType"),
    (("supportingInfo",), "ServiceRequest.supportingInfo"),
])
def test_a_submitted_invitation_states_time_specialty_and_record_summary(missing, expression):
    assert issues(without(telemed_request(), *missing)) == [("invariant", expression)]


@pytest.mark.req("CN-3.1")
def test_a_submitted_invitation_states_its_reason():
    purpose_only = [{"coding": telemed_request()["reasonCode"][0]["coding"]}]
    assert issues(telemed_request(reasonCode=purpose_only)) == [("invariant", "ServiceRequest.reasonCode.text")]
    assert issues(telemed_request(reasonCode=purpose_only, note=[{"text": "Chest pain"}])) == []


@pytest.mark.req("KZ-2")
def test_a_submitted_request_names_its_service_profile_and_treatment_start():
    assert issues(without(telemed_request(), "code")) == [("invariant", "ServiceRequest.code")]
    mode_only = telemed_request()["extension"][:1]
    assert issues(telemed_request(extension=mode_only)) == [
        ("invariant", f"ServiceRequest.extension('{SD}/treated-since')")]


@pytest.mark.req("RU-15")
def test_the_mode_is_a_code_of_consultation_mode_once():
    sr = telemed_request()
    sr["extension"][0]["valueCoding"]["code"] = "by-pigeon"
    assert issues(sr) == [("code-invalid", "ServiceRequest.extension[0].value")]
    sr = telemed_request()
    sr["extension"].append(sr["extension"][0])
    assert issues(sr) == [("structure", f"ServiceRequest.extension('{SD}/consultation-mode')")]
    sr = telemed_request()
    sr["extension"][0] = {"url": sr["extension"][0]["url"], "valueString": "deferred"}
    assert issues(sr) == [("required", "ServiceRequest.extension[0].value")]


def test_the_kind_binding_and_reference_targets():
    other = [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]}]
    assert issues(telemed_request(category=other)) == [("code-invalid", "ServiceRequest.category[0]")]
    assert issues(without(telemed_request(), "category")) == [("required", "ServiceRequest.category")]
    assert issues(telemed_request(subject={"reference": "Group/g1"})) == [("structure", "ServiceRequest.subject")]
    assert issues(telemed_request(requester={"reference": "Organization/orgA"})) == [
        ("structure", "ServiceRequest.requester")]


def test_every_failure_is_reported_at_once():
    found = issues(without(telemed_request(priority=None), "priority", "performerType", "code"))
    assert {e for _, e in found} == {"ServiceRequest.priority", "ServiceRequest.performerType", "ServiceRequest.code"}


# --- ConsultTask ------------------------------------------------------------------------------------

def test_a_consult_task_has_a_fixed_intent_and_a_bound_business_status():
    assert issues(consult_task(intent="plan")) == [("value", "Task.intent")]
    status = {"coding": [{"system": "http://example.org", "code": "done"}]}
    assert issues(consult_task(businessStatus=status)) == [("code-invalid", "Task.businessStatus")]
    assert issues(without(consult_task(), "businessStatus")) == [("required", "Task.businessStatus")]
    assert issues(consult_task(basedOn=[{"reference": "CarePlan/c1"}])) == [("structure", "Task.basedOn[0]")]


def test_the_paused_clock_is_one_duration():
    task = consult_task()
    task["extension"][0] = {"url": task["extension"][0]["url"], "valueString": "1 h"}
    assert issues(task) == [("required", "Task.extension[0].value")]


# --- ConsultConclusion ----------------------------------------------------------------------------

@pytest.mark.req("RU-24")
def test_a_conclusion_states_it_and_codes_it_in_icd10():
    assert issues(without(consult_conclusion(), "conclusion", "conclusionCode")) == [
        ("invariant", "DiagnosticReport.conclusion")]
    scanned = [{"contentType": "application/pdf", "url": "Binary/scan"}]
    assert issues(without(consult_conclusion(presentedForm=scanned), "conclusion", "conclusionCode")) == []
    snomed = [{"coding": [{"system": "http://snomed.info/sct", "code": "194828000"}]}]
    assert issues(consult_conclusion(conclusionCode=snomed)) == [("invariant", "DiagnosticReport.conclusionCode")]
    assert issues(without(consult_conclusion(), "basedOn")) == [("required", "DiagnosticReport.basedOn")]


# --- ConsultProtocol -------------------------------------------------------------------------------

@pytest.mark.req("KZ-3")
def test_a_protocol_has_a_number_and_titled_sections():
    protocol = consult_protocol()
    protocol["section"][2] = section("conclusion")
    assert issues(protocol) == [("required", "Composition.section[2].title")]
    assert issues(without(consult_protocol(), "identifier")) == [("required", "Composition.identifier")]
    protocol = consult_protocol()
    protocol["section"][1]["code"]["coding"][0]["code"] = "gossip"
    assert issues(protocol) == [("code-invalid", "Composition.section[1].code")]
    protocol = consult_protocol()
    protocol["section"][1]["code"] = {"coding": [{"system": "http://loinc.org", "code": "10154-3"}]}
    assert issues(protocol) == []  # extensible: other code systems may be used


# --- ConsultMessage --------------------------------------------------------------------------------

def test_a_message_belongs_to_a_consultation_and_has_a_sender_time_and_payload():
    assert issues(without(consult_message(), "basedOn")) == [("invariant", "Communication.basedOn")]
    assert issues(without(consult_message(partOf=[{"reference": "Task/t1"}]), "basedOn")) == []
    assert issues(without(consult_message(), "sender", "sent")) == [("required", "Communication.sent"),
                                                                     ("required", "Communication.sender")]
