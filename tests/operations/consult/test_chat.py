"""The chat of a consultation: opened by $submit, posted to with POST Communication, visible only
to the consultation's participants, kept as posted."""

from __future__ import annotations

import pytest

from operations.consult.chat import CONSULT_MESSAGE, thread
from tests.operations.consult.conftest import as_, problem, ref


def text(body: str, **more) -> dict:
    return {"resourceType": "Communication", "status": "completed", "basedOn": [ref("ServiceRequest/sr1")],
            "payload": [{"contentString": body}], **more}


async def read_thread(desk, who: str) -> list[dict]:
    r = await desk.client.get(f"/{thread('sr1')}", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


async def post(desk, who: str, message: dict):
    return await desk.client.post("/Communication", json=message, headers=as_(desk.app, who))


@pytest.mark.req("SPB-3.4")
async def test_submit_opens_the_thread_for_the_participants(desk):
    task = await desk.submit()
    for who in ("requester", "consultant1", "coordinator"):
        messages = await read_thread(desk, who)
        assert len(messages) == 1, who
        first = messages[0]
        assert CONSULT_MESSAGE in first["meta"]["profile"]
        assert first["sender"] == ref("PractitionerRole/requester-role")
        assert first["about"] == [ref(f"Task/{task['id']}")]
        assert first["reasonCode"][0]["coding"][0]["code"] == "awaiting-acceptance"


@pytest.mark.req("SPB-3.4")
async def test_participants_post_text_and_files_and_read_them_in_order(desk):
    task = await desk.submit()
    assert (await desk.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    r = await post(desk, "requester", text("ECG and troponin attached below"))
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["sender"] == ref("Practitioner/requester") and "sent" in mine  # set by the server
    assert CONSULT_MESSAGE in mine["meta"]["profile"]
    # a file of the consultation, by reference (linked to the request, so only participants see it)
    doc = {"resourceType": "DocumentReference", "status": "current", "subject": ref("Patient/p1"),
           "content": [{"attachment": {"contentType": "application/pdf", "url": "http://pacs.example/ecg.pdf"}}],
           "context": {"related": [ref("ServiceRequest/sr1")]}}
    r = await desk.client.post("/DocumentReference", json=doc, headers=as_(desk.app, "requester"))
    assert r.status_code == 201, r.text
    r = await post(desk, "requester", {**text("ECG"), "payload": [
        {"contentReference": ref(f"DocumentReference/{r.json()['id']}")}]})
    assert r.status_code == 201, r.text
    voice = {"contentAttachment": {"contentType": "audio/ogg", "data": "T2dnUw==", "title": "voice message"}}
    r = await post(desk, "consultant1", {**text("Listen:"), "payload": [{"contentString": "Listen:"}, voice],
                                         "sender": ref("PractitionerRole/consultant1-role")})
    assert r.status_code == 201, r.text
    for who in ("requester", "consultant1"):
        messages = await read_thread(desk, who)
        assert [m["sender"]["reference"] for m in messages] == [
            "PractitionerRole/requester-role", "PractitionerRole/consultant1-role", "Practitioner/requester",
            "Practitioner/requester", "PractitionerRole/consultant1-role"]
        # the second message is the request event "taken into work", recorded in the chat (SPB-4.2)
        assert messages[1]["category"][0]["coding"][0]["code"] == "notification"
        assert "$accept" in messages[1]["payload"][0]["contentString"]
        assert [m["sent"] for m in messages] == sorted(m["sent"] for m in messages)
        assert messages[-1]["payload"][1]["contentAttachment"]["title"] == "voice message"


@pytest.mark.req("SPB-3.4")
async def test_an_outsider_can_neither_read_nor_post(desk):
    await desk.submit()
    r = await post(desk, "requester", text("for participants only"))
    assert r.status_code == 201, r.text
    assert await read_thread(desk, "outsider") == []
    hidden = await desk.client.get(f"/Communication/{r.json()['id']}", headers=as_(desk.app, "outsider"))
    assert hidden.status_code == 404
    problem(await post(desk, "outsider", text("let me in")), 403, "forbidden")
    assert len(await read_thread(desk, "requester")) == 2


async def test_the_sender_is_the_caller(desk):
    await desk.submit()
    r = await post(desk, "requester", text("signed by someone else", sender=ref("PractitionerRole/consultant1-role")))
    problem(r, 422, "processing", "Communication.sender")


async def test_a_file_of_another_consultation_is_refused(desk, client):
    await desk.submit()
    await desk.submit("sr-stat")
    other = {"resourceType": "Binary", "contentType": "text/plain", "data": "eA==",
             "securityContext": ref("ServiceRequest/sr-stat")}
    r = await client.post("/Binary", json=other)
    assert r.status_code == 201, r.text
    message = {**text("x"), "payload": [{"contentAttachment": {"contentType": "text/plain",
                                                               "url": f"Binary/{r.json()['id']}"}}]}
    problem(await post(desk, "requester", message), 422, "processing", "Communication.payload[0].contentAttachment.url")


async def test_a_closed_consultation_takes_no_new_messages(desk):
    task = await desk.submit()
    assert (await desk.op("requester", f"Task/{task['id']}/$cancel", reason="patient discharged")).status_code == 200
    problem(await post(desk, "requester", text("one more thing")), 409, "conflict", "Communication.basedOn")
    thread = await read_thread(desk, "requester")  # still readable: the opening and the cancellation
    assert [m["reasonCode"][0]["coding"][0]["code"] for m in thread] == ["awaiting-acceptance", "cancelled"]
    assert "patient discharged" in thread[1]["payload"][0]["contentString"]


@pytest.mark.req("RU-58")
async def test_a_posted_message_is_kept_as_posted(desk):
    await desk.submit()
    r = await post(desk, "requester", text("the patient is allergic to penicillin"))
    message = r.json()
    edited = {**message, "payload": [{"contentString": "no allergies"}]}
    r = await desk.client.put(f"/Communication/{message['id']}", json=edited, headers=as_(desk.app, "requester"))
    problem(r, 422, "processing", "Communication.payload")
    patch = [{"op": "replace", "path": "/sender", "value": ref("Practitioner/consultant1")}]
    r = await desk.client.patch(f"/Communication/{message['id']}", json=patch,
                                headers={**as_(desk.app, "requester"), "Content-Type": "application/json-patch+json"})
    problem(r, 422, "processing", "Communication.sender")
    # other elements (its status, a note) may change
    r = await desk.client.put(f"/Communication/{message['id']}", json={**message, "note": [{"text": "read"}]},
                              headers=as_(desk.app, "requester"))
    assert r.status_code == 200, r.text
    assert (await read_thread(desk, "consultant1"))[1]["payload"] == message["payload"]


@pytest.mark.req("SPB-4.2")
async def test_request_events_appear_in_the_chat(desk):
    task = await desk.submit()
    assert (await desk.op("consultant1", f"Task/{task['id']}/$accept")).status_code == 200
    r = await desk.op("consultant1", f"Task/{task['id']}/$request-info", comment="Please attach the latest ECG")
    assert r.status_code == 200, r.text
    r = await desk.op("requester", f"Task/{task['id']}/$provide-info", comment="ECG attached")
    assert r.status_code == 200, r.text
    r = await desk.op("consultant1", f"Task/{task['id']}/$transfer", owner=ref("PractitionerRole/consultant2-role"),
                      reason="on leave")
    assert r.status_code == 200, r.text
    thread = await read_thread(desk, "requester")
    events = [m["reasonCode"][0]["coding"][0]["code"] for m in thread if m.get("reasonCode")]
    # submitted, taken into work, the question (the answer is a message of its own), the transfer
    assert events == ["awaiting-acceptance", "in-work", "awaiting-information", "in-work"], events
    assert "on leave" in thread[-1]["payload"][0]["contentString"]
    assert "Task/$accept by PractitionerRole/consultant1-role" in thread[1]["payload"][0]["contentString"]


async def test_a_message_about_the_task_joins_the_thread(desk):
    task = await desk.submit()
    message = {"resourceType": "Communication", "status": "completed", "partOf": [ref(f"Task/{task['id']}")],
               "payload": [{"contentString": "about the work item"}]}
    r = await post(desk, "consultant2", message)
    assert r.status_code == 201, r.text
    assert r.json()["basedOn"] == [ref("ServiceRequest/sr1")]
    assert [m["payload"][0]["contentString"] for m in await read_thread(desk, "requester")][-1] == "about the work item"
