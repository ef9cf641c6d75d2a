"""Which changes fire which topic (the topics' triggers on before/after versions)."""

from __future__ import annotations

import pytest

from fhir_server.auth.consultation import KIND
from fhir_server.search.params import params_for
from fhir_server.storage.port import NOTIFIED_TYPES
from fhir_server.subscriptions.topics import DEADLINE, TOPICS, fired


def names(type: str, before, after) -> list[str]:
    return [t.name for t in fired(type, before, after)]


def test_every_watched_type_is_written_to_the_outbox_and_filters_exist():
    for topic in TOPICS:
        assert set(topic.triggers) <= NOTIFIED_TYPES, topic.name
        for type, params in topic.filters.items():
            assert set(params) <= set(params_for(type)), (topic.name, type)


def test_consultation_request_created():
    sr = {"resourceType": "ServiceRequest", "status": "active",
          "category": [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}]}
    assert names("ServiceRequest", None, sr) == ["consultation-request"]
    assert names("ServiceRequest", sr, sr | {"status": "completed"}) == []
    assert names("ServiceRequest", None, {"resourceType": "ServiceRequest", "status": "active"}) == []


def test_task_routed_and_status():
    t = {"resourceType": "Task", "status": "requested"}
    assert names("Task", None, t) == ["task-status"]
    routed = t | {"owner": {"reference": "PractitionerRole/r1"}}
    assert names("Task", t, routed) == ["consultation-routed"]
    assert names("Task", routed, routed | {"owner": {"reference": "PractitionerRole/r2"}}) == ["consultation-routed"]
    assert names("Task", routed, routed | {"status": "in-progress"}) == ["task-status"]
    assert names("Task", routed, routed | {"description": "x"}) == []
    assert names("Task", routed, None) == []  # a deletion


def test_chat_message():
    msg = {"resourceType": "Communication", "status": "completed", "partOf": [{"reference": "Task/1"}]}
    assert names("Communication", None, msg) == ["chat-message"]
    assert names("Communication", None, msg | {"partOf": [{"reference": "Encounter/1"}]}) == []
    assert names("Communication", msg, msg | {"status": "stopped"}) == []


@pytest.mark.parametrize("type", ["DiagnosticReport", "Composition"])
def test_conclusion(type):
    draft = {"resourceType": type, "status": "preliminary"}
    assert names(type, None, draft) == []
    assert names(type, draft, draft | {"status": "final"}) == ["conclusion"]
    assert names(type, draft | {"status": "final"}, draft | {"status": "amended"}) == ["conclusion"]


def test_deadline_overdue():
    t = {"resourceType": "Task", "status": "in-progress"}
    late = t | {"meta": {"tag": [{"system": DEADLINE, "code": "overdue"}]}}
    assert names("Task", t, late) == ["deadline-overdue"]
    assert names("Task", late, late | {"description": "x"}) == []


def test_critical_observation():
    obs = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 190}}
    crit = obs | {"interpretation": [{"coding": [{"code": "HH"}]}]}
    assert names("Observation", None, obs) == []
    assert names("Observation", None, crit) == ["critical-observation"]
    assert names("Observation", obs, crit) == ["critical-observation"]
    assert names("Observation", crit, crit | {"note": [{"text": "x"}]}) == []


def test_appointment():
    a = {"resourceType": "Appointment", "status": "booked", "start": "2026-12-10T09:00:00Z"}
    assert names("Appointment", None, a) == ["appointment"]
    assert names("Appointment", a, a | {"start": "2026-12-11T09:00:00Z"}) == ["appointment"]
    assert names("Appointment", a, a | {"comment": "x"}) == []
