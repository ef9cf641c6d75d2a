"""A small world for the consultation workflow: a requester in organisation A, two consultants
and a coordinator in organisation B, an outsider in organisation C, a patient, and draft
consultation requests. Every call goes over HTTP with the practitioner's own token."""

from __future__ import annotations

import copy

import pytest

from fhir_server.auth.consultation import KIND
from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
from profiles import CANONICAL
from tests.tokens import auth

PEOPLE = {"requester": "orgA", "consultant1": "orgB", "consultant2": "orgB", "coordinator": "orgB",
          "outsider": "orgC"}


def ref(r: str) -> dict:
    return {"reference": r}


def world() -> list[dict]:
    out: list[dict] = [{"resourceType": "Organization", "id": o, "name": o} for o in ("orgA", "orgB", "orgC")]
    out += [{"resourceType": "Patient", "id": "p1", "name": [{"family": "Ivanova"}]}]
    # orgB consults for orgA (CN-10: invitations and routing go along active agreements)
    out += [{"resourceType": "OrganizationAffiliation", "id": "orgB-for-orgA", "active": True,
             "organization": ref("Organization/orgA"), "participatingOrganization": ref("Organization/orgB")}]
    for p, org in PEOPLE.items():
        out.append({"resourceType": "Practitioner", "id": p, "name": [{"family": p}]})
        role = {"resourceType": "PractitionerRole", "id": f"{p}-role", "active": True,
                "practitioner": ref(f"Practitioner/{p}"), "organization": ref(f"Organization/{org}")}
        if p == "coordinator":
            role["code"] = [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]
        out.append(role)
    return out


# What a TelemedRequest must carry to be submitted (profiles/_differentials.py, docs/profiles.md):
# purpose and reason, time, wanted specialty, record summary, date since which the patient is treated.
SUBMITTABLE = {
    "reasonCode": [{"coding": [{"system": f"{CANONICAL}/CodeSystem/consultation-purpose", "code": "tactics"}],
                    "text": "Chest pain after stenting; choice of treatment"}],
    "occurrencePeriod": {"start": "2026-12-07T09:00:00Z", "end": "2026-12-08T18:00:00Z"},
    "performerType": {"coding": [{"system": "http://snomed.info/sct", "code": "17561000", "display": "Cardiologist"}]},
    "supportingInfo": [{"display": "Discharge summary of 2026-11-20"}],
    "extension": [{"url": f"{CANONICAL}/StructureDefinition/treated-since", "valueDate": "2026-11-12"}],
}


def draft(id: str = "sr1", priority: str | None = "urgent") -> dict:
    sr = {"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order",
          "category": [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}],
          "code": {"text": "Cardiology consultation"}, "subject": ref("Patient/p1"),
          "requester": ref("PractitionerRole/requester-role"), **copy.deepcopy(SUBMITTABLE)}
    if priority:
        sr["priority"] = priority
    return sr


def as_(app, who: str) -> dict:
    """The headers of a practitioner's token (fhirUser Practitioner/<who>)."""
    return auth(app, "user/*.cruds openid fhirUser", fhirUser=f"Practitioner/{who}")


def parameters(**values) -> dict:
    """A Parameters resource: strings as valueString, {"reference"} as valueReference,
    {"system","code"} as valueCoding, lists as repeated parameters, resources as resource."""
    out = []
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                out.append({"name": name, "valueString": v})
            elif "resourceType" in v:
                out.append({"name": name, "resource": v})
            elif "reference" in v:
                out.append({"name": name, "valueReference": v})
            elif "code" in v:
                out.append({"name": name, "valueCoding": v})
            else:
                out.append({"name": name, "valueAttachment": v})
    return {"resourceType": "Parameters", **({"parameter": out} if out else {})}


class Desk:
    """Calls the operations as a given practitioner."""

    def __init__(self, app, client):
        self.app, self.client = app, client

    async def op(self, who: str, path: str, **values):
        return await self.client.post(f"/{path}", json=parameters(**values), headers=as_(self.app, who))

    async def submit(self, sr: str = "sr1", org: str | None = "orgB") -> dict:
        values = {"organization": ref(f"Organization/{org}")} if org else {}
        r = await self.op("requester", f"ServiceRequest/{sr}/$submit", **values)
        assert r.status_code == 201, r.text
        return r.json()

    async def task(self, id: str, who: str | None = None):
        return await self.client.get(f"/Task/{id}", headers=as_(self.app, who) if who else None)


@pytest.fixture
async def desk(app, client):
    for r in [*world(), draft("sr1"), draft("sr-stat", "stat"), draft("sr-routine", "routine")]:
        resp = await client.put(f"/{r['resourceType']}/{r['id']}", json=r)
        assert resp.status_code in (200, 201), resp.text
    return Desk(app, client)


def problem(r, status: int, code: str, expression: str | None = None) -> None:
    assert r.status_code == status, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == code, r.text
    if expression is not None:
        assert expression in issue.get("expression", []), r.text
