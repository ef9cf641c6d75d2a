"""The demo data set: a small region with three organisations, their doctors, patients and vitals.

Loaded by ``telemed serve --demo`` once (a transaction of PUTs with fixed ids; skipped when
the first organisation already exists).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fhir_server.settings import Settings
from profiles import SNILS_SYSTEM as SNILS  # СНИЛС, the person's insurance number

OMS = "urn:oid:1.2.643.5.1.13.2.1.1.1"  # полис ОМС
OID_MO = "urn:oid:1.2.643.5.1.13.13.99.2.114"  # register of medical organisations (FRMO)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs",
          "display": "Vital Signs"}

ORGANISATIONS = [
    ("demo-kokb", "1.2.643.5.1.13.13.12.2.42.4201", "Кузбасская клиническая больница им. С.В. Беляева", "Кемерово"),
    ("demo-nkz-gb1", "1.2.643.5.1.13.13.12.2.42.4230", "Новокузнецкая городская клиническая больница № 1", "Новокузнецк"),
    ("demo-onco", "1.2.643.5.1.13.13.12.2.42.4210", "Кузбасский клинический онкологический диспансер", "Кемерово"),
]
PRACTITIONERS = [
    # id, family, given, snils, organisation, specialty code (V021), specialty
    ("demo-cardio", "Иванова", ["Мария", "Петровна"], "112-233-445 95", "demo-kokb", "27", "кардиология"),
    ("demo-neuro", "Петров", ["Алексей", "Николаевич"], "123-456-789 64", "demo-kokb", "53", "неврология"),
    ("demo-therapist", "Сидоров", ["Игорь", "Викторович"], "134-567-890 12", "demo-nkz-gb1", "76", "терапия"),
    ("demo-oncologist", "Кузнецова", ["Елена", "Сергеевна"], "145-678-901 33", "demo-onco", "60", "онкология"),
]
PATIENTS = [
    ("demo-patient-1", "Смирнов", ["Павел", "Андреевич"], "male", "1958-03-14", "156-789-012 44", "4250 0000 0000 0011"),
    ("demo-patient-2", "Волкова", ["Анна", "Игоревна"], "female", "1972-11-02", "167-890-123 55", "4250 0000 0000 0022"),
    ("demo-patient-3", "Морозов", ["Дмитрий", "Олегович"], "male", "1990-07-21", "178-901-234 66", "4250 0000 0000 0033"),
]
# LOINC code, display, unit, base value per patient
VITAL_SIGNS = [
    ("8867-4", "Heart rate", "/min", [78, 92, 64]),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", [96, 93, 99]),
    ("8310-5", "Body temperature", "Cel", [36.7, 37.4, 36.6]),
    ("29463-7", "Body weight", "kg", [84.0, 67.5, 78.2]),
]


def organisation(id: str, oid: str, name: str, city: str) -> dict:
    return {"resourceType": "Organization", "id": id, "active": True, "name": name,
            "identifier": [{"system": OID_MO, "value": oid}],
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov",
                                  "display": "Healthcare Provider"}]}],
            "address": [{"city": city, "state": "Кемеровская область — Кузбасс", "country": "RU"}]}


def practitioner(id, family, given, snils, *_):
    return {"resourceType": "Practitioner", "id": id, "active": True,
            "identifier": [{"system": SNILS, "value": snils}],
            "name": [{"use": "official", "family": family, "given": given}]}


def role(id, _family, _given, _snils, org, code, specialty):
    return {"resourceType": "PractitionerRole", "id": f"{id}-role", "active": True,
            "practitioner": {"reference": f"Practitioner/{id}"}, "organization": {"reference": f"Organization/{org}"},
            "specialty": [{"coding": [{"system": "urn:oid:1.2.643.5.1.13.13.11.1066", "code": code, "display": specialty}]}]}


def patient(id, family, given, gender, birth, snils, oms):
    return {"resourceType": "Patient", "id": id, "active": True,
            "identifier": [{"system": SNILS, "value": snils}, {"system": OMS, "value": oms}],
            "name": [{"use": "official", "family": family, "given": given}], "gender": gender, "birthDate": birth,
            "managingOrganization": {"reference": "Organization/demo-nkz-gb1"}}


def vitals(now: datetime) -> list[dict]:
    out = []
    for p, (pid, *_rest) in enumerate(PATIENTS):
        for day in range(5):
            when = (now - timedelta(days=day, hours=p)).replace(microsecond=0).isoformat()
            for code, display, unit, bases in VITAL_SIGNS:
                value = round(bases[p] + (day % 3 - 1) * (0.1 if unit in ("Cel", "kg") else 1), 1)
                out.append({
                    "resourceType": "Observation", "id": f"{pid}-{code}-{day}", "status": "final",
                    "category": [{"coding": [VITALS]}],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                    "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
                    "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                })
    return out


def bundle(now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    resources = ([organisation(*o) for o in ORGANISATIONS] + [practitioner(*p) for p in PRACTITIONERS]
                 + [role(*p) for p in PRACTITIONERS] + [patient(*p) for p in PATIENTS] + vitals(now))
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


async def load_demo(settings: Settings) -> bool:
    """Load the demo set unless it is there already. True when it was loaded now."""
    import orjson

    from fhir_server.cli import _in_process

    async def work(client) -> bool:
        if (await client.get(f"/Organization/{ORGANISATIONS[0][0]}")).status_code == 200:
            return False
        r = await client.post("", content=orjson.dumps(bundle()), headers={"Content-Type": "application/fhir+json",
                                                                          "Prefer": "return=minimal"})
        if r.status_code != 200:
            raise RuntimeError(f"demo data rejected: {r.text}")
        return True

    return await _in_process(work, settings)
