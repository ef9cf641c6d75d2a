"""Routing (CN-1, CN-10, KZ-6): platform matching at submission, Task/$route by the requester's
side, and re-routing a refused consultation. Over HTTP with each practitioner's own token.

The platform (on top of the ``desk`` world): orgB (consultant1, consultant2, coordinator) and orgD
(dcardio) offer cardiology under an agreement with orgA; orgC (outsider) offers it too, without
an agreement; orgE (onco) is the special route for oncology, which orgB offers as well; coordA
coordinates orgA."""

from __future__ import annotations

import pytest

from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
from operations.consult.codes import REFUSAL_REASON
from operations.consult.routing import CANDIDATE, ROUTING, SPECIAL_ROUTE, SUCCESSOR
from tests.operations.consult.conftest import as_, draft, problem, ref

SNOMED = "http://snomed.info/sct"
CARDIOLOGY = {"system": SNOMED, "code": "394579002", "display": "Cardiology"}
ONCOLOGY = {"system": SNOMED, "code": "394593009", "display": "Medical oncology"}
REASON = {"system": REFUSAL_REASON, "code": "incomplete-documentation"}
TARGET = "Parameters.parameter.where(name='organization')"


def agreement(consulting: str, requesting: str = "orgA", **extra) -> dict:
    return {"resourceType": "OrganizationAffiliation", "id": f"{consulting}-for-{requesting}", "active": True,
            "organization": ref(f"Organization/{requesting}"),
            "participatingOrganization": ref(f"Organization/{consulting}"), **extra}


def service(id: str, org: str, specialty: dict, special: bool = False) -> dict:
    hs = {"resourceType": "HealthcareService", "id": id, "active": True, "providedBy": ref(f"Organization/{org}"),
          "specialty": [{"coding": [specialty]}]}
    if special:
        hs["characteristic"] = [{"coding": [{"system": ROUTING, "code": SPECIAL_ROUTE}]}]
    return hs


def role(who: str, org: str, specialty: dict | None = None, coordinator: bool = False, **extra) -> dict:
    r = {"resourceType": "PractitionerRole", "id": f"{who}-role", "active": True,
         "practitioner": ref(f"Practitioner/{who}"), "organization": ref(f"Organization/{org}"), **extra}
    if specialty:
        r["specialty"] = [{"coding": [specialty]}]
    if coordinator:
        r["code"] = [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]
    return r


def asking(id: str, specialty: dict) -> dict:
    return draft(id) | {"performerType": {"coding": [specialty]}}


def platform() -> list[dict]:
    out = [{"resourceType": "Organization", "id": o, "name": o} for o in ("orgD", "orgE")]
    out += [{"resourceType": "Practitioner", "id": p, "name": [{"family": p}]} for p in ("dcardio", "onco", "coordA")]
    out += [role("consultant1", "orgB", CARDIOLOGY), role("consultant2", "orgB", ONCOLOGY),
            role("outsider", "orgC", CARDIOLOGY), role("dcardio", "orgD", CARDIOLOGY),
            role("onco", "orgE", ONCOLOGY), role("coordA", "orgA", coordinator=True)]
    out += [service("b-cardio", "orgB", CARDIOLOGY), service("b-onco", "orgB", ONCOLOGY),
            service("c-cardio", "orgC", CARDIOLOGY), service("d-cardio", "orgD", CARDIOLOGY),
            service("e-onco", "orgE", ONCOLOGY, special=True)]
    out += [agreement("orgD"), agreement("orgE")]
    out += [asking("sr-cardio", CARDIOLOGY), asking("sr-cardio2", CARDIOLOGY), asking("sr-onco", ONCOLOGY)]
    return out


async def put(client, *resources: dict) -> None:
    for r in resources:
        resp = await client.put(f"/{r['resourceType']}/{r['id']}", json=r)
        assert resp.status_code in (200, 201), resp.text


@pytest.fixture
async def hub(desk, client):
    """The ``desk`` with the platform around it."""
    await put(client, *platform())
    return desk


def candidates(task: dict) -> list[str]:
    return [i["valueReference"]["reference"] for i in task.get("input") or ()
            if i["type"]["coding"][0] == {"system": ROUTING, "code": CANDIDATE, "display": "Candidate organisation"}]


def business(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


@pytest.mark.req("CN-1")
@pytest.mark.req("CN-10")
async def test_platform_matching_offers_to_agreed_organisations_least_loaded_first(hub):
    await hub.submit("sr1", "orgB")  # orgB has one open Task for its one cardiologist, orgD none for its one
    task = await hub.submit("sr-cardio", None)
    # orgD first; orgC offers cardiology but has no agreement with orgA; orgE does not offer it
    assert candidates(task) == ["Organization/orgD", "Organization/orgB"]
    assert (business(task), task["status"], "owner" in task) == ("offered", "requested", False)


@pytest.mark.req("CN-10")
async def test_an_expired_or_inactive_agreement_does_not_count(hub, client):
    await put(client, agreement("orgD", period={"start": "2020-01-01", "end": "2021-12-31"}),
              agreement("orgB") | {"id": "orgB-for-orgA", "active": False})
    task = await hub.submit("sr-cardio", None)
    assert (candidates(task), business(task)) == ([], "awaiting-routing")
    r = await hub.op("requester", "ServiceRequest/sr-cardio2/$submit", organization=ref("Organization/orgD"))
    problem(r, 422, "processing", TARGET)


@pytest.mark.req("CN-10")
async def test_a_direct_invitation_needs_an_agreement(hub, client):
    r = await hub.op("requester", "ServiceRequest/sr-cardio/$submit", organization=ref("Organization/orgC"))
    problem(r, 422, "processing", TARGET)
    assert (await client.get("/ServiceRequest/sr-cardio")).json()["status"] == "draft"
    # an agreement that lists specialties covers those only
    await put(client, agreement("orgC", specialty=[{"coding": [ONCOLOGY]}]))
    r = await hub.op("requester", "ServiceRequest/sr-cardio/$submit", organization=ref("Organization/orgC"))
    problem(r, 422, "processing", TARGET)
    assert (await hub.op("requester", "ServiceRequest/sr-onco/$submit",
                         organization=ref("Organization/orgC"))).status_code == 201


@pytest.mark.req("KZ-6")
async def test_a_special_route_takes_its_specialty_to_its_organisation_only(hub):
    task = await hub.submit("sr-onco", None)
    assert candidates(task) == ["Organization/orgE"]  # orgB offers oncology too, but not as the special route


async def test_consultants_on_leave_and_coordinators_do_not_count(hub, client):
    await put(client, role("dcardio", "orgD", CARDIOLOGY,
                           notAvailable=[{"description": "leave", "during": {"start": "2020-01-01"}}]))
    task = await hub.submit("sr-cardio", None)
    assert candidates(task) == ["Organization/orgB"]


async def test_a_request_that_asks_for_no_specialty_or_service_awaits_routing(hub):
    task = await hub.submit("sr1", None)
    assert (candidates(task), business(task), "owner" in task) == ([], "awaiting-routing", False)


@pytest.mark.req("CN-1")
async def test_candidates_see_the_offered_task_and_its_request_outsiders_do_not(hub, client):
    task = await hub.submit("sr-cardio", None)
    for who in ("dcardio", "consultant2"):  # members of candidate organisations
        assert (await hub.task(task["id"], who)).status_code == 200
        assert (await client.get("/ServiceRequest/sr-cardio", headers=as_(hub.app, who))).status_code == 200
    found = (await client.get("/Task?candidate=Organization/orgD&status=requested",
                              headers=as_(hub.app, "dcardio"))).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [task["id"]]
    problem(await hub.task(task["id"], "outsider"), 404, "not-found")
    problem(await client.get("/ServiceRequest/sr-cardio", headers=as_(hub.app, "onco")), 404, "not-found")


@pytest.mark.req("CN-1")
async def test_a_coordinator_of_the_requesting_organisation_routes_a_waiting_request(hub):
    task = await hub.submit("sr1", None)
    r = await hub.op("coordA", f"Task/{task['id']}/$route", organization=ref("Organization/orgB"))
    assert r.status_code == 200, r.text
    routed = r.json()
    assert (routed["owner"], business(routed)) == (ref("Organization/orgB"), "awaiting-acceptance")
    assert (await hub.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200


async def test_route_without_a_target_matches_again(hub, client):
    task = await hub.submit("sr-cardio", "orgB")  # invited directly, nobody took it yet
    r = await hub.op("requester", f"Task/{task['id']}/$route")
    assert r.status_code == 200, r.text
    assert (candidates(r.json()), "owner" in r.json()) == (["Organization/orgD", "Organization/orgB"], False)
    # routed directly again: the candidates are gone, and lose sight of it
    r = await hub.op("requester", f"Task/{task['id']}/$route", organization=ref("Organization/orgB"))
    assert (candidates(r.json()), r.json()["owner"]) == ([], ref("Organization/orgB"))
    problem(await hub.task(task["id"], "dcardio"), 404, "not-found")


@pytest.mark.req("CN-10")
async def test_route_checks_who_calls_the_target_and_the_state(hub):
    task = await hub.submit("sr-cardio", "orgB")
    for who in ("coordinator", "consultant1"):  # the consulting side does not route
        problem(await hub.op(who, f"Task/{task['id']}/$route"), 403, "forbidden")
    problem(await hub.op("outsider", f"Task/{task['id']}/$route"), 404, "not-found")
    for org in ("orgC", "nowhere"):  # no agreement; unknown
        r = await hub.op("requester", f"Task/{task['id']}/$route", organization=ref(f"Organization/{org}"))
        problem(r, 422, "processing", TARGET)
    assert (await hub.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    problem(await hub.op("requester", f"Task/{task['id']}/$route"), 409, "conflict", "Task.owner")
    assert (await hub.op("requester", f"Task/{task['id']}/$cancel")).status_code == 200
    problem(await hub.op("requester", f"Task/{task['id']}/$route"), 409, "conflict", "Task.status")


@pytest.mark.req("CN-3.2")
@pytest.mark.req("CN-1")
async def test_refusal_on_formal_grounds_then_re_routing(hub, client):
    first = await hub.submit("sr-cardio", "orgB")
    r = await hub.op("consultant1", f"Task/{first['id']}/$refuse", reason=REASON, text="No ECG attached")
    assert r.status_code == 200, r.text
    # the requester sees the refusal and its reason, and routes the request again (platform matching)
    seen = (await hub.task(first["id"], "requester")).json()
    assert (seen["status"], seen["statusReason"]["text"]) == ("rejected", "No ECG attached")
    r = await hub.op("requester", f"Task/{first['id']}/$route")
    assert r.status_code == 200, r.text
    refused = r.json()
    assert (refused["status"], refused["statusReason"]["coding"]) == ("rejected", [REASON])
    [link] = refused["output"]
    assert link["type"]["coding"][0]["code"] == SUCCESSOR
    second = (await client.get(f"/{link['valueReference']['reference']}", headers=as_(hub.app, "requester"))).json()
    # the organisation that refused is left out; the new Task is for the same request, due anew
    assert candidates(second) == ["Organization/orgD"] and business(second) == "offered"
    assert second["basedOn"] == [ref("ServiceRequest/sr-cardio")] and second["status"] == "requested"
    assert second["restriction"]["period"]["start"] > first["restriction"]["period"]["start"]
    prov = (await client.get(f"/Provenance?target={link['valueReference']['reference']}")).json()["entry"]
    assert prov[0]["resource"]["entity"] == [{"role": "derivation", "what": ref(f"Task/{first['id']}")}]
    # the refused Task is routed once; its successor is taken by a candidate
    problem(await hub.op("requester", f"Task/{first['id']}/$route"), 409, "conflict", "Task.output")
    r = await hub.op("dcardio", f"Task/{second['id']}/$claim")
    assert (r.status_code, r.json()["owner"]) == (200, ref("PractitionerRole/dcardio-role")), r.text
    assert (await client.get("/ServiceRequest/sr-cardio")).json()["status"] == "active"


async def test_a_refused_task_can_be_invited_directly_to_the_same_organisation(hub):
    first = await hub.submit("sr-cardio", "orgB")
    assert (await hub.op("consultant1", f"Task/{first['id']}/$refuse", reason=REASON, text="x")).status_code == 200
    r = await hub.op("coordA", f"Task/{first['id']}/$route", organization=ref("Organization/orgB"))
    assert r.status_code == 200, r.text
    new = r.json()["output"][0]["valueReference"]["reference"]
    seen = (await hub.client.get(f"/{new}", headers=as_(hub.app, "consultant2"))).json()
    assert (seen["owner"], business(seen)) == (ref("Organization/orgB"), "awaiting-acceptance")
