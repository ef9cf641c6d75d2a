"""E-mail: participants are written to in their language, can switch it off, and mails wait for
an SMTP server that is down; Subscriptions with an e-mail channel (both stores; a real SMTP
server process)."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.subscriptions.email import EMAIL_OPT_OUT
from tests.fhir_server.subscriptions.conftest import subscription, task
from tests.fhir_server.subscriptions.smtp import SMTPSink, sink  # noqa: F401 - the fixture


@pytest.fixture
def settings(settings, sink):
    settings.smtp_host, settings.smtp_port, settings.smtp_from = "127.0.0.1", sink.port, "noreply@telemed.test"
    return settings


def person(type: str, id: str, mail: str | None, language: str | None = None, opt_out: bool = False, **extra) -> dict:
    body = {"resourceType": type, "id": id, "name": [{"given": [id.capitalize()], "family": "Test"}], **extra}
    if mail:
        body["telecom"] = [{"system": "phone", "value": "+70000000000"}, {"system": "email", "value": mail}]
    if language:
        body["communication"] = ([{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}}]
                                 if type == "Patient" else [{"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}])
    if opt_out:
        body["extension"] = [{"url": EMAIL_OPT_OUT, "valueBoolean": True}]
    return body


async def _put(client, *resources):
    for r in resources:
        resp = await client.put(f"/{r['resourceType']}/{r['id']}", json=r)
        assert resp.status_code in (200, 201), resp.text


async def _wait(sink: SMTPSink, n: int, timeout: float = 15) -> list[dict]:
    for _ in range(int(timeout / 0.1)):
        got = sink.messages()
        if len(got) >= n:
            await asyncio.sleep(0.3)  # and no more than that
            return sink.messages()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(sink.messages())} mails arrived, expected {n}")


@pytest.mark.req("SPB-4.2")
async def test_task_participants_get_mail_in_their_language_unless_switched_off(client, sink):
    await _put(client, person("Practitioner", "anna", "anna@clinic.test", "en"),
               person("Practitioner", "boris", "boris@clinic.test"),
               person("Practitioner", "quiet", "quiet@clinic.test", opt_out=True),
               {"resourceType": "PractitionerRole", "id": "boris-role", "practitioner": {"reference": "Practitioner/boris"}})
    await client.post("/Task", json=task(requester={"reference": "Practitioner/anna"}, owner="PractitionerRole/boris-role"))
    await client.post("/Task", json=task(requester={"reference": "Practitioner/quiet"}))
    mails = await _wait(sink, 2)
    assert sorted(m["to"] for m in mails) == ["anna@clinic.test", "boris@clinic.test"]
    anna = next(m for m in mails if m["to"] == "anna@clinic.test")
    boris = next(m for m in mails if m["to"] == "boris@clinic.test")
    assert anna["subject"].startswith("Consultation Task/") and "Hello Anna Test" in anna["text"]
    assert boris["subject"].startswith("Консультация Task/") and "Здравствуйте, Boris Test" in boris["text"]
    assert all(m["from"] == "noreply@telemed.test" for m in mails)


@pytest.mark.req("SPB-4.2")
async def test_switching_email_off_stops_mail(client, sink):
    anna = person("Practitioner", "anna", "anna@clinic.test", "en")
    await _put(client, anna)
    await client.post("/Task", json=task(requester={"reference": "Practitioner/anna"}))
    await _wait(sink, 1)
    anna["extension"] = [{"url": EMAIL_OPT_OUT, "valueBoolean": True}]
    await _put(client, anna)
    await client.post("/Task", json=task(requester={"reference": "Practitioner/anna"}))
    await asyncio.sleep(1.0)
    assert len(sink.messages()) == 1


@pytest.mark.req("KZ-5")
async def test_patient_gets_date_and_time_of_the_appointment(client, sink):
    await _put(client, person("Patient", "p1", "patient@home.test"),
               person("Practitioner", "doc", "doc@clinic.test", "en"))
    r = await client.post("/Appointment", json={
        "resourceType": "Appointment", "status": "booked", "start": "2026-12-10T09:30:00+03:00",
        "end": "2026-12-10T10:00:00+03:00",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/doc"}, "status": "accepted"}]})
    assert r.status_code == 201, r.text
    mails = await _wait(sink, 2)
    patient = next(m for m in mails if m["to"] == "patient@home.test")
    assert "2026-12-10T09:30:00+03:00" in patient["subject"] and "2026-12-10T09:30:00+03:00" in patient["text"]


@pytest.mark.req("SPB-4.2")
async def test_chat_message_mails_the_recipient_with_its_text(client, sink):
    await _put(client, person("Practitioner", "anna", "anna@clinic.test", "en"),
               person("Practitioner", "boris", "boris@clinic.test", "en"))
    t = (await client.post("/Task", json=task())).json()
    r = await client.post("/Communication", json={
        "resourceType": "Communication", "status": "completed", "partOf": [{"reference": f"Task/{t['id']}"}],
        "sender": {"reference": "Practitioner/anna"}, "recipient": [{"reference": "Practitioner/boris"}],
        "payload": [{"contentString": "Please add the ECG from Monday."}]})
    assert r.status_code == 201, r.text
    mails = await _wait(sink, 1)
    assert [m["to"] for m in mails] == ["boris@clinic.test"]
    assert "Please add the ECG from Monday." in mails[0]["text"]


async def test_mail_waits_for_the_smtp_server(client, sink):
    sink.stop()
    await _put(client, person("Practitioner", "anna", "anna@clinic.test", "en"))
    r = await client.post("/Task", json=task(requester={"reference": "Practitioner/anna"}))
    assert r.status_code == 201  # the mail server being down never fails the request
    await asyncio.sleep(1.0)
    sink.start()
    mails = await _wait(sink, 1, timeout=20)
    assert [m["to"] for m in mails] == ["anna@clinic.test"]


async def test_email_channel_subscription(client, sink):
    r = await client.post("/Subscription", json=subscription("task-status", "mailto:watcher@clinic.test",
                                                             channel="email"))
    assert r.status_code == 201, r.text
    for _ in range(100):
        if (await client.get(f"/Subscription/{r.json()['id']}")).json()["status"] == "active":
            break
        await asyncio.sleep(0.05)
    t = (await client.post("/Task", json=task())).json()
    mails = await _wait(sink, 1)
    assert mails[0]["to"] == "watcher@clinic.test"
    assert f"Task/{t['id']}" in mails[0]["text"] and "Task status changed" in mails[0]["subject"]


async def test_email_channel_names_only_what_the_subscriber_may_read(app, client, sink):
    from tests.tokens import auth

    patient = auth(app, "patient/*.cruds", fhirUser="Patient/p1", sub="p1")
    r = await client.post("/Subscription", json=subscription("task-status", "mailto:p1@home.test", channel="email"),
                          headers=patient)
    assert r.status_code == 201, r.text
    for _ in range(100):
        if (await client.get(f"/Subscription/{r.json()['id']}")).json()["status"] == "active":
            break
        await asyncio.sleep(0.05)
    other = (await client.post("/Task", json=task(**{"for": {"reference": "Patient/p2"}}))).json()
    mine = (await client.post("/Task", json=task(**{"for": {"reference": "Patient/p1"}}))).json()
    mails = await _wait(sink, 2)
    texts = " ".join(m["text"] for m in mails)
    assert f"Task/{mine['id']}" in texts and f"Task/{other['id']}" not in texts
