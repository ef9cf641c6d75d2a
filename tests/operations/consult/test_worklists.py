"""Worklists (SPB-2.2): the named queries available, in-work, outgoing, all (Task) and drafts
(ServiceRequest), with their filters, read over HTTP with each practitioner's own token."""

from __future__ import annotations

import json

import pytest

from fhir_server.write import accept
from profiles import CANONICAL, PROFILES
from tests.operations.consult.conftest import as_, draft, problem, ref

SPECIALTY = {"system": "http://snomed.info/sct", "code": "56397003", "display": "Neurologist"}


async def worklist(desk, who: str, query: str, type: str = "Task") -> list[dict]:
    r = await desk.client.get(f"/{type}?_query={query}", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def requests(tasks: list[dict]) -> list[str]:
    return [t["basedOn"][0]["reference"].split("/")[1] for t in tasks]


@pytest.fixture
async def three(desk, client):
    """sr1 (urgent), sr-stat (stat, patient Petrov) and sr-routine (routine, for a neurologist)
    submitted to organisation B; a fourth request stays a draft."""
    await client.put("/Patient/p2", json={"resourceType": "Patient", "id": "p2", "name": [{"family": "Petrov"}]})
    stat = draft("sr-stat", "stat") | {"subject": ref("Patient/p2")}
    routine = draft("sr-routine", "routine") | {"performerType": {"coding": [SPECIALTY]}}
    for sr in (stat, routine, draft("sr-draft", "routine")):
        assert (await client.put(f"/ServiceRequest/{sr['id']}", json=sr)).status_code in (200, 201)
    return {sr: (await desk.submit(sr))["id"] for sr in ("sr1", "sr-stat", "sr-routine")}


@pytest.mark.req("SPB-2.2")
async def test_available_lists_what_is_offered_to_my_organisation_by_due_time(desk, three):
    for who in ("consultant1", "consultant2", "coordinator"):
        tasks = await worklist(desk, who, "available")
        assert sorted(requests(tasks)) == ["sr-routine", "sr-stat", "sr1"], who
        dues = [t["restriction"]["period"]["end"] for t in tasks]
        assert dues == sorted(dues)
    assert await worklist(desk, "requester", "available") == []
    assert await worklist(desk, "outsider", "available") == []


@pytest.mark.req("SPB-2.2")
async def test_taking_a_consultation_moves_it_from_available_to_in_work(desk, three):
    assert (await desk.op("consultant1", f"Task/{three['sr1']}/$accept")).status_code == 200
    assert requests(await worklist(desk, "consultant1", "in-work")) == ["sr1"]
    assert await worklist(desk, "consultant2", "in-work") == []
    assert sorted(requests(await worklist(desk, "consultant2", "available"))) == ["sr-routine", "sr-stat"]
    r = await desk.op("consultant1", f"Task/{three['sr1']}/$request-info", comment="ECG?")
    assert r.status_code == 200, r.text
    assert requests(await worklist(desk, "consultant1", "in-work")) == ["sr1"]  # on-hold is still in work


@pytest.mark.req("SPB-2.2")
async def test_outgoing_open_by_default_closed_on_request(desk, three):
    assert sorted(requests(await worklist(desk, "requester", "outgoing"))) == ["sr-routine", "sr-stat", "sr1"]
    assert (await desk.op("requester", f"Task/{three['sr-stat']}/$cancel", reason="transferred")).status_code == 200
    assert sorted(requests(await worklist(desk, "requester", "outgoing"))) == ["sr-routine", "sr1"]
    assert requests(await worklist(desk, "requester", "outgoing&closed=true")) == ["sr-stat"]
    assert await worklist(desk, "consultant1", "outgoing") == []
    # all: every consultation I take part in; the outsider takes part in none
    assert sorted(requests(await worklist(desk, "coordinator", "all"))) == ["sr-routine", "sr1"]
    assert requests(await worklist(desk, "coordinator", "all&closed=true")) == ["sr-stat"]
    assert await worklist(desk, "outsider", "all") == []


@pytest.mark.req("SPB-2.2")
@pytest.mark.req("SPB-D")
async def test_drafts_are_my_draft_requests(desk, three):
    assert [sr["id"] for sr in await worklist(desk, "requester", "drafts", "ServiceRequest")] == ["sr-draft"]
    assert await worklist(desk, "consultant1", "drafts", "ServiceRequest") == []


@pytest.mark.req("SPB-2.2")
@pytest.mark.parametrize("filter,expected", [
    ("patient.name=Petrov", ["sr-stat"]),           # patient name
    ("patient.name=Ivanova", ["sr-routine", "sr1"]),
    ("priority=stat", ["sr-stat"]),                  # urgency (form of care)
    ("priority=urgent,routine", ["sr-routine", "sr1"]),
    ("status=requested", ["sr-routine", "sr-stat", "sr1"]),
    ("focus:ServiceRequest.performer-type=http://snomed.info/sct|56397003", ["sr-routine"]),  # profile
    ("focus:ServiceRequest.performer-type=http://snomed.info/sct|17561000", ["sr-stat", "sr1"]),
    ("code=doctor-doctor", ["sr-routine", "sr-stat", "sr1"]),  # consultation kind
])
async def test_worklists_filter_by_patient_status_profile_and_urgency(desk, three, filter, expected):
    assert sorted(requests(await worklist(desk, "consultant2", f"available&{filter}"))) == expected


async def test_unknown_query_and_misplaced_parameters_are_refused(desk, client, three):
    strict = {**as_(desk.app, "consultant1"), "Prefer": "handling=strict"}
    problem(await client.get("/Task?_query=mine", headers=strict), 400, "invalid", "_query")
    problem(await client.get("/Patient?_query=drafts", headers=strict), 400, "invalid", "_query")
    lenient = (await client.get("/Task?_query=mine", headers=as_(desk.app, "consultant1"))).json()["entry"]
    warnings = [e["resource"]["issue"][0]["expression"] for e in lenient if e["search"]["mode"] == "outcome"]
    assert warnings == [["_query"]]
    problem(await client.get("/Task?_query=available&closed=true", headers=as_(desk.app, "consultant1")), 400,
            "invalid", "closed")
    problem(await client.get("/Task?_query=outgoing&closed=maybe", headers=as_(desk.app, "requester")), 400,
            "invalid", "closed")
    problem(await client.get("/Task?_query=available"), 403, "forbidden")  # a system client is nobody's worklist
    assert len((await client.get("/Task?_query=all")).json()["entry"]) == 3


async def test_the_due_search_parameter_sorts_and_filters(desk, client, three):
    stat = (await desk.task(three["sr-stat"])).json()
    due = stat["restriction"]["period"]["end"]
    r = await client.get(f"/Task?due=le{due}&_sort=due")
    assert [t["resource"]["id"] for t in r.json()["entry"]][0] == three["sr-stat"]
    r = await client.get("/Task?_sort=-due")
    ends = [t["resource"]["restriction"]["period"]["end"] for t in r.json()["entry"]]
    assert ends == sorted(ends, reverse=True)


@pytest.mark.parametrize("name", ["task-due", "task-received", "task-offered-to"])
def test_our_search_parameters_are_valid_fhir(name):
    resource = json.loads((PROFILES / f"searchparameter-{name}.json").read_text())
    accept(resource, None, 64)
    assert resource["url"] == f"{CANONICAL}/SearchParameter/{resource['id']}"


async def test_the_capability_statement_names_the_worklists_and_the_due_parameter(client):
    rest = (await client.get("/metadata")).json()["rest"][0]
    task = next(r for r in rest["resource"] if r["type"] == "Task")
    assert {"available", "in-work", "outgoing", "all", "journal"} <= {o["name"] for o in task["operation"]}
    assert {"due", "received", "offered-to"} <= {p["name"] for p in task["searchParam"]}
    request = next(r for r in rest["resource"] if r["type"] == "ServiceRequest")
    assert "drafts" in {o["name"] for o in request["operation"]}
