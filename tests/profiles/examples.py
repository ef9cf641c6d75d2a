"""Valid examples of each profile, as data (tests change one element at a time)."""

from __future__ import annotations

import copy

from profiles import CANONICAL

SD = f"{CANONICAL}/StructureDefinition"
CS = f"{CANONICAL}/CodeSystem"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def ref(r: str) -> dict:
    return {"reference": r}


def telemed_request(**changes) -> dict:
    sr = {
        "resourceType": "ServiceRequest", "meta": {"profile": [f"{SD}/TelemedRequest"]}, "status": "active",
        "intent": "order", "priority": "urgent",
        "extension": [{"url": f"{SD}/consultation-mode", "valueCoding": {"system": f"{CS}/consultation-mode",
                                                                         "code": "deferred"}},
                      {"url": f"{SD}/treated-since", "valueDate": "2026-11-12"}],
        "category": [{"coding": [{"system": f"{CS}/consultation-kind", "code": "doctor-doctor"}]}],
        "code": {"text": "Cardiology consultation"}, "subject": ref("Patient/p1"),
        "occurrencePeriod": {"start": "2026-12-07T09:00:00Z", "end": "2026-12-08T18:00:00Z"},
        "requester": ref("PractitionerRole/requester-role"),
        "performerType": {"text": "Cardiologist, higher category"},
        "reasonCode": [{"coding": [{"system": f"{CS}/consultation-purpose", "code": "tactics"}],
                        "text": "Chest pain after stenting"}],
        "supportingInfo": [ref("DocumentReference/summary"), ref("EpisodeOfCare/e1")],
    }
    sr.update(changes)
    return sr


def consult_task(**changes) -> dict:
    task = {
        "resourceType": "Task", "meta": {"profile": [f"{SD}/ConsultTask"]}, "status": "on-hold", "intent": "order",
        "priority": "stat", "basedOn": [ref("ServiceRequest/sr1")], "focus": ref("ServiceRequest/sr1"),
        "for": ref("Patient/p1"), "requester": ref("PractitionerRole/requester-role"),
        "owner": ref("PractitionerRole/consultant1-role"),
        "code": {"coding": [{"system": f"{CS}/consultation-kind", "code": "doctor-doctor"}]},
        "businessStatus": {"coding": [{"system": f"{CS}/consultation-business-status",
                                       "code": "awaiting-information"}]},
        "restriction": {"period": {"start": "2026-12-05T10:00:00Z"}},
        "extension": [{"url": f"{SD}/consult-deadline-remaining",
                       "valueDuration": {"value": 3600, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"}}],
    }
    task.update(changes)
    return task


def consult_conclusion(**changes) -> dict:
    report = {
        "resourceType": "DiagnosticReport", "meta": {"profile": [f"{SD}/ConsultConclusion"]}, "status": "final",
        "basedOn": [ref("ServiceRequest/sr1")], "code": {"text": "Consult note"}, "subject": ref("Patient/p1"),
        "performer": [ref("PractitionerRole/consultant1-role")], "conclusion": "Stable angina; continue therapy",
        "conclusionCode": [{"coding": [{"system": ICD10, "code": "I20.8"}]}],
    }
    report.update(changes)
    return report


def section(code: str, title: str | None = None) -> dict:
    out = {"code": {"coding": [{"system": f"{CS}/protocol-section", "code": code}]},
           "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{code}</div>'}}
    if title:
        out["title"] = title
    return out


def consult_protocol(**changes) -> dict:
    composition = {
        "resourceType": "Composition", "meta": {"profile": [f"{SD}/ConsultProtocol"]}, "status": "final",
        "identifier": {"system": f"{CANONICAL}/identifier/consult-protocol-number", "value": "18.08.2023.002"},
        "type": {"text": "Consult note"}, "subject": ref("Patient/p1"), "date": "2026-12-05T10:00:00Z",
        "author": [ref("PractitionerRole/consultant1-role")], "title": "Protocol No. 18.08.2023.002",
        "attester": [{"mode": "professional", "party": ref("PractitionerRole/consultant1-role")},
                     {"mode": "official", "party": ref("Organization/orgB")}],
        "custodian": ref("Organization/orgB"),
        "section": [section("complaints", "Complaints"), section("anamnesis", "Anamnesis"),
                    section("conclusion", "Conclusion")],
    }
    composition.update(changes)
    return composition


def consult_message(**changes) -> dict:
    message = {
        "resourceType": "Communication", "meta": {"profile": [f"{SD}/ConsultMessage"]}, "status": "completed",
        "basedOn": [ref("ServiceRequest/sr1")], "sent": "2026-12-05T10:00:00Z",
        "sender": ref("PractitionerRole/requester-role"), "payload": [{"contentString": "ECG attached"}],
    }
    message.update(changes)
    return message


def without(resource: dict, *keys: str) -> dict:
    out = copy.deepcopy(resource)
    for k in keys:
        out.pop(k, None)
    return out
