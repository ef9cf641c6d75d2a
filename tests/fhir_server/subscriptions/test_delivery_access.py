"""Notifications carry only what the subscriber may read, checked when they are sent; the
workflow operations' changes reach subscribers (both stores)."""

from __future__ import annotations

import pytest

from tests.fhir_server.subscriptions.conftest import subscription
from tests.fhir_server.subscriptions.receiver import Receiver
from tests.operations.consult.conftest import as_, desk  # noqa: F401 - the fixture

pytestmark = pytest.mark.req("SPB-4.2")


async def _subscribe(client, app, who: str, receiver: Receiver, topic: str = "task-status") -> str:
    r = await client.post("/Subscription", json=subscription(topic, receiver.url, content="full-resource"),
                          headers=as_(app, who))
    assert r.status_code == 201, r.text
    await receiver.wait_for(lambda: receiver.notifications("handshake"))
    return r.json()["id"]


async def test_a_subscriber_without_rights_gets_no_content(app, client, desk):  # noqa: F811
    participant, outsider = await Receiver().up(), await Receiver().up()
    try:
        await _subscribe(client, app, "requester", participant)
        await _subscribe(client, app, "outsider", outsider)
        task_id = (await desk.submit())["id"]  # the requester's consultation Task, routed to organisation B
        await participant.wait_for(lambda: participant.event_numbers())
        await outsider.wait_for(lambda: outsider.event_numbers())
        seen = participant.notifications("event-notification")[0]
        assert seen["focus"][0].endswith(f"Task/{task_id}")
        assert seen["bundle"]["entry"][1]["resource"]["id"] == task_id
        hidden = outsider.notifications("event-notification")[0]
        assert hidden["focus"] == [None]  # the event's number and time, nothing of the Task
        assert len(hidden["bundle"]["entry"]) == 1
        assert task_id not in str(hidden["bundle"])
    finally:
        await participant.down()
        await outsider.down()


async def test_workflow_operations_notify_status_changes(app, client, desk):  # noqa: F811
    hook = await Receiver().up()
    try:
        await _subscribe(client, app, "requester", hook)
        task_id = (await desk.submit())["id"]
        r = await desk.op("consultant1", f"Task/{task_id}/$accept")
        assert r.status_code == 200, r.text
        await hook.wait_for(lambda: len(hook.event_numbers()) == 2)
        statuses = [e["resource"]["status"] for n in hook.notifications("event-notification")
                    for e in n["bundle"]["entry"][1:]]
        assert statuses == ["requested", "in-progress"]
    finally:
        await hook.down()
