"""The deadline sweeper flags overdue consultations once, and subscribers hear of it (RU-19)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fhir_server.subscriptions.topics import DEADLINE
from operations.consult import overdue
from tests.fhir_server.subscriptions.conftest import subscription
from tests.fhir_server.subscriptions.receiver import Receiver
from tests.fhir_server.subscriptions.smtp import sink  # noqa: F401 - the fixture
from tests.operations.consult.conftest import as_

pytestmark = pytest.mark.req("RU-19")


def _flags(task: dict) -> list[dict]:
    return [t for t in task.get("meta", {}).get("tag", []) if t["system"] == DEADLINE]


async def test_overdue_consultation_is_flagged_once_and_notified(app, client, desk):
    svc = app.state.services
    hook = await Receiver().up()
    try:
        r = await client.post("/Subscription", json=subscription("deadline-overdue", hook.url),
                              headers=as_(app, "requester"))
        assert r.status_code == 201, r.text
        await hook.wait_for(lambda: hook.notifications("handshake"))
        stat = await desk.submit("sr-stat")  # emergency: due 2 hours after receipt
        planned = await desk.submit("sr-routine")  # planned: due at the end of the day
        due = datetime.fromisoformat(stat["restriction"]["period"]["end"].replace("Z", "+00:00"))
        assert await overdue.sweep(svc, due - timedelta(minutes=1)) == 0
        assert await overdue.sweep(svc, due + timedelta(minutes=1)) == 1
        flagged = (await desk.task(stat["id"], "requester")).json()
        assert _flags(flagged) == [{"system": DEADLINE, "code": "overdue", "display": "Overdue"}]
        assert flagged["status"] == stat["status"] and flagged["meta"]["versionId"] == "2"
        assert _flags((await desk.task(planned["id"], "requester")).json()) == []
        assert await overdue.sweep(svc, due + timedelta(minutes=2)) == 0  # once
        await hook.wait_for(lambda: hook.event_numbers())
        note = hook.notifications("event-notification")[0]
        assert note["focus"][0].endswith(f"Task/{stat['id']}")
        prov = (await client.get("/Provenance", params={"target": f"Task/{stat['id']}"})).json()
        assert [e["resource"]["target"][0]["reference"] for e in prov["entry"]
                if e["resource"]["activity"].get("text") == "deadline overdue"] == [f"Task/{stat['id']}/_history/2"]
    finally:
        await hook.down()


async def test_paused_clock_is_not_overdue(app, desk):
    svc = app.state.services
    task = await desk.submit("sr-stat")
    r = await desk.op("consultant1", f"Task/{task['id']}/$accept")
    assert r.status_code == 200, r.text
    r = await desk.op("consultant1", f"Task/{task['id']}/$request-info", comment="Need the latest ECG")
    assert r.status_code == 200, r.text
    later = datetime.now(timezone.utc) + timedelta(days=3)
    assert await overdue.sweep(svc, later) == 0


@pytest.fixture
def settings(settings, sink):
    settings.smtp_host, settings.smtp_port = "127.0.0.1", sink.port
    return settings


async def test_overdue_is_escalated_to_the_coordinators_by_mail(app, client, desk, sink):
    import asyncio

    for who in ("requester", "coordinator", "consultant1"):
        practitioner = (await client.get(f"/Practitioner/{who}")).json()
        practitioner["telecom"] = [{"system": "email", "value": f"{who}@clinic.test"}]
        assert (await client.put(f"/Practitioner/{who}", json=practitioner)).status_code == 200
    stat = await desk.submit("sr-stat")  # offered to organisation B, where 'coordinator' coordinates
    due = datetime.fromisoformat(stat["restriction"]["period"]["end"].replace("Z", "+00:00"))
    assert await overdue.sweep(app.state.services, due + timedelta(minutes=1)) == 1
    for _ in range(150):
        late = [m for m in sink.messages() if "overdue" in m["subject"] or "истёк" in m["subject"]]
        if {m["to"] for m in late} >= {"requester@clinic.test", "coordinator@clinic.test"}:
            break
        await asyncio.sleep(0.1)
    assert {m["to"] for m in late} == {"requester@clinic.test", "coordinator@clinic.test"}


async def test_an_overdue_consultation_nobody_has_escalates_to_the_requesters_coordinators(app, client, desk):
    """A request the platform could not match (or nobody claimed) is escalated to whoever routes
    it: the coordinators of the requester's organisation."""
    from fhir_server.auth.participants import COORDINATOR, ROLE_SYSTEM
    from fhir_server.subscriptions import email

    dispatcher = {"resourceType": "PractitionerRole", "id": "dispatcher-role", "active": True,
                  "practitioner": {"reference": "Practitioner/outsider"}, "organization": {"reference": "Organization/orgA"},
                  "code": [{"coding": [{"system": ROLE_SYSTEM, "code": COORDINATOR}]}]}
    assert (await client.put("/PractitionerRole/dispatcher-role", json=dispatcher)).status_code == 201
    stat = await desk.submit("sr-stat", org=None)
    assert stat["businessStatus"]["coding"][0]["code"] == "awaiting-routing" and "owner" not in stat
    people = await email.concerned(app.state.services.store, "deadline-overdue", stat)
    assert people == ["PractitionerRole/requester-role", "PractitionerRole/dispatcher-role"]
