"""The Kuzbass region of the scenarios: a district hospital that asks, a regional clinical
hospital and an oncology centre that consult, their practitioners (with e-mail addresses, so the
notifications reach a real SMTP server), and a patient found by SNILS."""

from __future__ import annotations

from fhir_server.auth.consultation import KIND
from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
from profiles import CANONICAL, SNILS_SYSTEM
from tests.scenarios.region import ref

ORGS = {"district": "Novokuznetsk district hospital No. 1", "regional": "Kuzbass regional clinical hospital",
        "cardio": "Kuzbass cardiology dispensary", "oncology": "Kuzbass clinical oncology centre"}
# username -> (organisation, family name, coordinator?)
STAFF = {"petrov": ("district", "Petrov", False), "ivanova": ("regional", "Ivanova", False),
         "sidorov": ("regional", "Sidorov", False), "kuznetsova": ("regional", "Kuznetsova", False),
         "orlova": ("regional", "Orlova", True), "volkov": ("cardio", "Volkov", False),
         "belov": ("oncology", "Belov", False),
         "gromova": ("oncology", "Gromova", True), "zaitsev": ("district", "Zaitsev", True)}
PATIENT_SNILS = "112-233-445 95"
CARDIOLOGIST = {"system": "http://snomed.info/sct", "code": "17561000", "display": "Cardiologist"}
ONCOLOGIST = {"system": "http://snomed.info/sct", "code": "309295000", "display": "Clinical oncologist"}
SPECIALTY = {"regional": CARDIOLOGIST, "cardio": CARDIOLOGIST, "oncology": ONCOLOGIST}
ROUTING = f"{CANONICAL}/CodeSystem/consultation-routing"


def practitioner(username: str) -> str:
    return f"Practitioner/{username}"


def role(username: str) -> str:
    return f"PractitionerRole/{username}-role"


def resources() -> list[dict]:
    out: list[dict] = [{"resourceType": "Organization", "id": id, "active": True, "name": name}
                       for id, name in ORGS.items()]
    # The consulting organisations consult for the district hospital under agreements (CN-10).
    out += [{"resourceType": "OrganizationAffiliation", "id": f"{id}-for-district", "active": True,
             "organization": ref("Organization/district"), "participatingOrganization": ref(f"Organization/{id}")}
            for id in ("regional", "cardio", "oncology")]
    # What each offers; the oncology centre is the special route for oncology (KZ-6).
    for id, specialty in SPECIALTY.items():
        service = {"resourceType": "HealthcareService", "id": f"{id}-consultations", "active": True,
                   "providedBy": ref(f"Organization/{id}"), "name": f"Teleconsultations: {specialty['display']}",
                   "specialty": [{"coding": [specialty]}]}
        if id == "oncology":
            service["characteristic"] = [{"coding": [{"system": ROUTING, "code": "special-route"}]}]
        out.append(service)
    out.append({"resourceType": "Patient", "id": "kz-patient", "active": True,
                "identifier": [{"system": SNILS_SYSTEM, "value": PATIENT_SNILS}],
                "name": [{"family": "Kovalenko", "given": ["Maria"]}], "gender": "female",
                "birthDate": "1961-04-12"})
    for username, (org, family, coordinates) in STAFF.items():
        out.append({"resourceType": "Practitioner", "id": username, "active": True,
                    "name": [{"family": family}],
                    "telecom": [{"system": "email", "value": f"{username}@kuzbass.example"}]})
        r = {"resourceType": "PractitionerRole", "id": f"{username}-role", "active": True,
             "practitioner": ref(practitioner(username)), "organization": ref(f"Organization/{org}")}
        if coordinates:
            r["code"] = [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]
        elif org in SPECIALTY:
            r["specialty"] = [{"coding": [SPECIALTY[org]]}]
        out.append(r)
    return out


def users() -> dict[str, str]:
    return {username: practitioner(username) for username in STAFF}


def request(id: str, priority: str = "urgent", kind: str = "doctor-doctor", **extra) -> dict:
    """A draft consultation request by Dr Petrov (district hospital) about the patient, with what
    form 001/tm, KZ-2 and CN-3.1 ask for: purpose and reason, time, the wanted specialty, the
    record summary and the date since which the patient is treated."""
    return {"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order",
            "category": [{"coding": [{"system": KIND, "code": kind}]}], "priority": priority,
            "code": {"text": "Cardiology consultation"}, "subject": ref("Patient/kz-patient"),
            "requester": ref(role("petrov")),
            "reasonCode": [{"coding": [{"system": f"{CANONICAL}/CodeSystem/consultation-purpose", "code": "tactics"}],
                            "text": "Chest pain after stenting; choice of treatment"}],
            "occurrencePeriod": {"start": "2026-12-07T09:00:00Z", "end": "2026-12-08T18:00:00Z"},
            "performerType": {"coding": [CARDIOLOGIST]},
            "supportingInfo": [{"display": "Discharge summary of 2026-11-20"}],
            "extension": [{"url": f"{CANONICAL}/StructureDefinition/treated-since", "valueDate": "2026-11-12"}],
            **extra}
