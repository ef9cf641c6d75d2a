"""The code systems, profile and extension URLs of the consultation workflow.

The code systems are published as JSON under ``profiles/`` (``codesystem-*.json``); the form of
care <-> priority mapping (RU-14) and each form's default deadline are read from there.
"""

from __future__ import annotations

import json
from functools import cache

from fhir_server.auth.consultation import KIND
from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
from operations.parameters import PROFILES
from profiles import CANONICAL

__all__ = ["KIND", "ROLE_SYSTEM", "COORDINATOR"]

CONSULT_TASK = f"{CANONICAL}/StructureDefinition/ConsultTask"
BUSINESS_STATUS = f"{CANONICAL}/CodeSystem/consultation-business-status"
REFUSAL_REASON = f"{CANONICAL}/CodeSystem/refusal-reason"
FORM_OF_CARE = f"{CANONICAL}/CodeSystem/form-of-care"
# While a Task waits for information, the time that was left until its due time (a Duration in s).
REMAINING = f"{CANONICAL}/StructureDefinition/consult-deadline-remaining"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


@cache
def code_system(id: str) -> dict:
    return json.loads((PROFILES / f"codesystem-{id}.json").read_text())


def codes(id: str) -> set[str]:
    return {c["code"] for c in code_system(id)["concept"]}


def _property(concept: dict, name: str) -> str:
    return next(p["valueCode"] for p in concept["property"] if p["code"] == name)


@cache
def forms_of_care() -> dict[str, tuple[str, str]]:
    """Per request priority (``stat``...), its form of care and default deadline (RU-14, RU-19)."""
    return {_property(c, "priority"): (c["code"], _property(c, "deadline"))
            for c in code_system("form-of-care")["concept"]}


def business_status(code: str) -> dict:
    display = next(c["display"] for c in code_system("consultation-business-status")["concept"] if c["code"] == code)
    return {"coding": [{"system": BUSINESS_STATUS, "code": code, "display": display}], "text": display}


def business_code(task: dict) -> str | None:
    """The code of a Task's business status (``consultation-business-status``), None without one."""
    return next((c.get("code") for c in (task.get("businessStatus") or {}).get("coding") or ()), None)


def is_consult_task(resource: dict) -> bool:
    profiles = (resource.get("meta") or {}).get("profile") or ()
    return resource.get("resourceType") == "Task" and CONSULT_TASK in profiles
