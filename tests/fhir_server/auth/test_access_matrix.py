"""The access matrix: roles x interactions x the resources of two consultations and two patients.

Every cell is asserted: who sees what through read, vread, search (plain, _include,
_revinclude, chains, _has), history, batch/transaction GET entries, and who may write.
Consultation 1 (patient p1): requested by ``requester`` (org A), owned by ``consultant`` (org B).
Consultation 2 (patient p2): requested by ``unrelated`` (org C), owned by nobody yet.
``colleague`` works in org B but takes no part; ``coordinator`` coordinates org B, so sees
consultation 1 through its consultant.
"""

from __future__ import annotations

import pytest

from fhir_server.auth.consultation import ACCESS, KIND
from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
from tests.tokens import auth

pytestmark = pytest.mark.req("CN-4.4")

C1 = ["ServiceRequest/c1", "Task/t1", "Communication/m1", "DiagnosticReport/r1", "Composition/k1"]
C2 = ["ServiceRequest/c2", "Task/t2", "Communication/m2"]
P1_DATA = ["Patient/p1", "Observation/o1"]
P2_DATA = ["Patient/p2", "Observation/o2"]
ROLES = ("patient", "requester", "consultant", "colleague", "coordinator", "unrelated", "system")

# What each role may read (everything else must look missing).
SEES = {
    "patient": set(P1_DATA),
    "requester": set(C1) | set(P1_DATA) | set(P2_DATA),
    "consultant": set(C1) | set(P1_DATA) | set(P2_DATA),
    "colleague": set(P1_DATA) | set(P2_DATA),
    "coordinator": set(C1) | set(P1_DATA) | set(P2_DATA),
    "unrelated": set(C2) | set(P1_DATA) | set(P2_DATA),
    "system": set(C1) | set(C2) | set(P1_DATA) | set(P2_DATA),
}
ALL = C1 + C2 + P1_DATA + P2_DATA


def _ref(r: str) -> dict:
    return {"reference": r}


def world() -> list[dict]:
    orgs = [{"resourceType": "Organization", "id": o, "name": o} for o in ("orgA", "orgB", "orgC")]
    people = [{"resourceType": "Practitioner", "id": p, "name": [{"family": p}]}
              for p in ("requester", "consultant", "colleague", "coordinator", "unrelated")]
    role_org = {"requester": "orgA", "consultant": "orgB", "colleague": "orgB", "coordinator": "orgB",
                "unrelated": "orgC"}
    roles = []
    for p, org in role_org.items():
        role = {"resourceType": "PractitionerRole", "id": f"{p}-role", "active": True,
                "practitioner": _ref(f"Practitioner/{p}"), "organization": _ref(f"Organization/{org}")}
        if p == "coordinator":
            role["code"] = [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]
        roles.append(role)
    patients = [{"resourceType": "Patient", "id": p, "name": [{"family": p}],
                 "identifier": [{"system": "urn:snils", "value": f"snils-{p}"}]} for p in ("p1", "p2")]
    obs = [{"resourceType": "Observation", "id": f"o{n}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": _ref(f"Patient/p{n}")} for n in (1, 2)]
    kind = [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}]
    c1 = [
        {"resourceType": "ServiceRequest", "id": "c1", "status": "active", "intent": "order", "category": kind,
         "subject": _ref("Patient/p1"), "requester": _ref("PractitionerRole/requester-role")},
        {"resourceType": "Task", "id": "t1", "status": "in-progress", "intent": "order",
         "basedOn": [_ref("ServiceRequest/c1")], "for": _ref("Patient/p1"),
         "requester": _ref("PractitionerRole/requester-role"), "owner": _ref("PractitionerRole/consultant-role")},
        {"resourceType": "Communication", "id": "m1", "status": "completed", "basedOn": [_ref("ServiceRequest/c1")],
         "subject": _ref("Patient/p1"), "payload": [{"contentString": "please see the ECG"}]},
        {"resourceType": "DiagnosticReport", "id": "r1", "status": "final", "basedOn": [_ref("ServiceRequest/c1")],
         "code": {"text": "conclusion"}, "subject": _ref("Patient/p1")},
        {"resourceType": "Composition", "id": "k1", "status": "final", "type": {"text": "protocol"},
         "date": "2026-11-23", "author": [_ref("Practitioner/consultant")], "title": "Protocol",
         "subject": _ref("Patient/p1"), "event": [{"detail": [_ref("ServiceRequest/c1")]}]},
    ]
    c2 = [
        {"resourceType": "ServiceRequest", "id": "c2", "status": "active", "intent": "order", "category": kind,
         "subject": _ref("Patient/p2"), "requester": _ref("PractitionerRole/unrelated-role")},
        {"resourceType": "Task", "id": "t2", "status": "requested", "intent": "order",
         "basedOn": [_ref("ServiceRequest/c2")], "for": _ref("Patient/p2"),
         "requester": _ref("PractitionerRole/unrelated-role")},
        {"resourceType": "Communication", "id": "m2", "status": "completed", "basedOn": [_ref("ServiceRequest/c2")],
         "subject": _ref("Patient/p2")},
    ]
    return orgs + people + roles + patients + obs + c1 + c2


def headers(app, role: str) -> dict:
    if role == "system":
        return auth(app, "system/*.*")
    if role == "patient":
        return auth(app, "patient/*.rs openid fhirUser", patient="p1", fhirUser="Patient/p1")
    return auth(app, "user/*.cruds openid fhirUser", fhirUser=f"Practitioner/{role}")


@pytest.fixture
async def seeded(app, client):
    for r in world():  # one by one, in order: consultation tags come from what is already stored
        resp = await client.put(f"/{r['resourceType']}/{r['id']}", json=r)
        assert resp.status_code in (200, 201), resp.text
    return app


def ids(bundle: dict, mode: str | None = None) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") != "OperationOutcome"
            and (mode is None or e["search"]["mode"] == mode)}


async def test_the_server_tags_each_consultation_resource(seeded, client):
    for ref in C1:
        tags = (await client.get(f"/{ref}")).json()["meta"]["tag"]
        assert {"system": ACCESS, "code": "ServiceRequest/c1"} in tags, ref
    obs = (await client.get("/Observation/o1")).json()
    assert ACCESS not in str(obs.get("meta", {}).get("tag", []))


async def test_a_client_cannot_set_or_remove_the_access_tag(seeded, client):
    forged = {"resourceType": "Communication", "id": "m1", "status": "completed",
              "basedOn": [_ref("ServiceRequest/c1")],
              "meta": {"tag": [{"system": ACCESS, "code": "open"}]}}
    assert (await client.put("/Communication/m1", json=forged)).status_code == 200
    tags = (await client.get("/Communication/m1")).json()["meta"]["tag"]
    assert tags == [{"system": ACCESS, "code": "ServiceRequest/c1"}]


@pytest.mark.parametrize("role", ROLES)
async def test_read_and_vread(seeded, client, role):
    h = headers(seeded, role)
    for ref in ALL:
        r = await client.get(f"/{ref}", headers=h)
        v = await client.get(f"/{ref}/_history/1", headers=h)
        if ref in SEES[role]:
            assert (r.status_code, v.status_code) == (200, 200), (role, ref, r.text)
        else:
            assert (r.status_code, v.status_code) == (404, 404), (role, ref, r.text)
            assert r.json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize("role", ROLES)
async def test_search_each_type(seeded, client, role):
    h = headers(seeded, role)
    for type in ("ServiceRequest", "Task", "Communication", "DiagnosticReport", "Composition", "Observation",
                 "Patient"):
        r = await client.get(f"/{type}", headers=h)
        assert r.status_code == 200, (role, type, r.text)
        expected = {x for x in SEES[role] if x.startswith(type + "/")}
        assert ids(r.json()) == expected, (role, type)


@pytest.mark.parametrize("role", ROLES)
async def test_includes_leave_out_what_the_caller_may_not_see(seeded, client, role):
    h = headers(seeded, role)
    r = await client.get("/ServiceRequest?_revinclude=Communication:based-on&_revinclude=Task:based-on", headers=h)
    assert r.status_code == 200
    assert ids(r.json()) == {x for x in SEES[role] if x.split("/")[0] in ("Task", "ServiceRequest", "Communication")}
    r = await client.get("/Task?_include=Task:based-on&_include=Task:patient", headers=h)
    assert ids(r.json(), "include") <= SEES[role]
    # _revinclude from visible patients reaches only visible Observations and requests
    r = await client.get("/Patient?_revinclude=Observation:subject&_revinclude=ServiceRequest:subject", headers=h)
    assert ids(r.json(), "include") == {x for x in SEES[role] if x.split("/")[0] in ("Observation", "ServiceRequest")}


@pytest.mark.parametrize("role", ROLES)
async def test_chains_and_has_see_only_what_the_caller_may_search(seeded, client, role):
    h = headers(seeded, role)
    # Which patients have a consultation? Only the caller's consultations may answer.
    r = await client.get("/Patient?_has:ServiceRequest:subject:status=active", headers=h)
    assert r.status_code == 200
    assert ids(r.json()) == {f"Patient/{x.split('/')[1].replace('c', 'p')}" for x in SEES[role]
                             if x.startswith("ServiceRequest/")} & SEES[role]
    # Communications whose request is by a given requester: a chain through ServiceRequest.
    r = await client.get("/Communication?based-on:ServiceRequest.requester=PractitionerRole/requester-role",
                         headers=h)
    assert r.status_code == 200
    assert ids(r.json()) == ({"Communication/m1"} & SEES[role])


@pytest.mark.parametrize("role", ROLES)
async def test_history_shows_only_visible_versions(seeded, client, role):
    h = headers(seeded, role)
    r = await client.get("/Communication/_history", headers=h)
    assert r.status_code == 200
    assert ids(r.json()) == {x for x in SEES[role] if x.startswith("Communication/")}
    for ref in ("Communication/m1", "Observation/o2"):
        r = await client.get(f"/{ref}/_history", headers=h)
        assert r.status_code == (200 if ref in SEES[role] else 404), (role, ref)


@pytest.mark.parametrize("role", ROLES)
async def test_bundle_get_entries_follow_the_same_rules(seeded, client, role):
    h = headers(seeded, role)
    for kind in ("batch", "transaction"):
        body = {"resourceType": "Bundle", "type": kind,
                "entry": [{"request": {"method": "GET", "url": ref}} for ref in ALL]}
        r = await client.post("", json=body, headers=h)
        assert r.status_code == 200, r.text
        for ref, e in zip(ALL, r.json()["entry"]):
            assert e["response"]["status"].startswith("200" if ref in SEES[role] else "404"), (role, kind, ref)


@pytest.mark.parametrize("role", ROLES)
async def test_writes_into_a_consultation_need_participation(seeded, client, role):
    h = headers(seeded, role)
    message = {"resourceType": "Communication", "status": "completed", "basedOn": [_ref("ServiceRequest/c1")],
               "subject": _ref("Patient/p1"), "payload": [{"contentString": f"from {role}"}]}
    r = await client.post("/Communication", json=message, headers=h)
    if role == "patient":
        assert r.status_code == 403  # a read-only token
    elif "ServiceRequest/c1" in SEES[role]:
        assert r.status_code == 201, (role, r.text)
    else:
        assert r.status_code == 403, (role, r.text)
        assert r.json()["issue"][0]["code"] == "forbidden"


async def test_a_doctor_who_requests_a_consultation_sees_it(seeded, client):
    h = headers(seeded, "colleague")
    new = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
           "category": [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}],
           "subject": _ref("Patient/p2"), "requester": _ref("PractitionerRole/colleague-role")}
    r = await client.post("/ServiceRequest", json=new, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()["id"]
    assert (await client.get(f"/ServiceRequest/{created}", headers=h)).status_code == 200
    assert (await client.get(f"/ServiceRequest/{created}", headers=headers(seeded, "unrelated"))).status_code == 404
    # ...but cannot create one in another doctor's name
    new["requester"] = _ref("PractitionerRole/unrelated-role")
    assert (await client.post("/ServiceRequest", json=new, headers=h)).status_code == 403


async def test_a_patient_token_stays_in_its_compartment(seeded, client):
    h = headers(seeded, "patient")
    assert ids((await client.get("/Observation?code=8867-4", headers=h)).json()) == {"Observation/o1"}
    assert (await client.get("/Observation/o2", headers=h)).status_code == 404
    r = await client.get("/Observation?subject=Patient/p2", headers=h)
    assert ids(r.json()) == set()
    r = await client.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                "code": {"text": "x"}, "subject": _ref("Patient/p1")}, headers=h)
    assert r.status_code == 403  # patient/*.rs: no create
    r = await client.get("/Organization", headers=h)
    assert r.status_code in (403,)


async def test_scopes_limit_types_and_interactions(seeded, client):
    h = auth(seeded, "user/Observation.rs", fhirUser="Practitioner/requester")
    assert (await client.get("/Observation/o1", headers=h)).status_code == 200
    r = await client.get("/Patient/p1", headers=h)
    assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
    assert (await client.delete("/Observation/o1", headers=h)).status_code == 403
    # a chain through a type the token may not search is refused
    r = await client.get("/Observation?subject:Patient.name=p1", headers=h)
    assert r.status_code == 403


async def test_granular_scope_limits_search_and_read(seeded, client):
    h = auth(seeded, "user/Observation.rs?code=http://loinc.org|1234-5", fhirUser="Practitioner/requester")
    assert ids((await client.get("/Observation", headers=h)).json()) == set()
    assert (await client.get("/Observation/o1", headers=h)).status_code == 404
    h = auth(seeded, "user/Observation.rs?code=http://loinc.org|8867-4", fhirUser="Practitioner/requester")
    assert ids((await client.get("/Observation", headers=h)).json()) == {"Observation/o1", "Observation/o2"}


async def test_no_token_is_401_with_www_authenticate(seeded, client):
    r = await client.get("/Observation/o1", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_only_an_admin_may_cascade(seeded, client):
    h = headers(seeded, "requester")
    r = await client.delete("/Patient/p2?_cascade=delete", headers=h)
    assert r.status_code == 403


async def test_a_consultation_offered_to_an_organisation_is_visible_to_its_practitioners(seeded, client):
    kind = [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}]
    for r in [
        {"resourceType": "ServiceRequest", "id": "c3", "status": "active", "intent": "order", "category": kind,
         "subject": _ref("Patient/p2"), "requester": _ref("PractitionerRole/unrelated-role")},
        {"resourceType": "Task", "id": "t3", "status": "requested", "intent": "order",
         "basedOn": [_ref("ServiceRequest/c3")], "for": _ref("Patient/p2"),
         "requester": _ref("PractitionerRole/unrelated-role"), "owner": _ref("Organization/orgB")},
    ]:
        assert (await client.put(f"/{r['resourceType']}/{r['id']}", json=r)).status_code == 201
    for role, seen in (("colleague", 200), ("consultant", 200), ("coordinator", 200), ("requester", 404)):
        h = headers(seeded, role)
        assert (await client.get("/Task/t3", headers=h)).status_code == seen, role
        assert (await client.get("/ServiceRequest/c3", headers=h)).status_code == seen, role
