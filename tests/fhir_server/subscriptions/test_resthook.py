"""rest-hook Subscriptions end to end: handshake, events in order, payloads, filters, headers,
signature, failures and recovery, ``$status`` and ``$events`` (both stores)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from tests.fhir_server.subscriptions.conftest import subscription, task

pytestmark = pytest.mark.req("SPB-4.2")


async def _create(client, body: dict) -> dict:
    r = await client.post("/Subscription", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def _status(client, sid: str) -> str:
    return (await client.get(f"/Subscription/{sid}")).json()["status"]


async def _wait_status(client, sid: str, want: str, timeout: float = 10) -> dict:
    for _ in range(int(timeout / 0.05)):
        r = (await client.get(f"/Subscription/{sid}")).json()
        if r["status"] == want:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError(f"Subscription/{sid} stayed {r['status']}, wanted {want}")


async def test_handshake_activates_and_events_arrive_in_order(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    assert sub["status"] == "requested"
    await _wait_status(client, sub["id"], "active")
    hand = receiver.notifications("handshake")
    assert len(hand) == 1 and hand[0]["subscription"]["reference"].endswith(f"Subscription/{sub['id']}")
    ids = []
    for n in range(5):
        ids.append((await client.post("/Task", json=task())).json()["id"])
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 5)
    notes = receiver.notifications("event-notification")
    assert receiver.event_numbers() == [1, 2, 3, 4, 5]
    assert [f.rsplit("/", 2)[-2:] for n in notes for f in n["focus"]] == [["Task", i] for i in ids]
    assert notes[-1]["events-since-subscription-start"] == "5"
    assert notes[0]["topic"].endswith("/SubscriptionTopic/task-status")
    # id-only: the Bundle holds the status alone
    assert all(len(n["bundle"]["entry"]) == 1 for n in notes)
    assert notes[0]["bundle"]["type"] == "history"


async def test_update_fires_only_on_status_change(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    await _wait_status(client, sub["id"], "active")
    t = (await client.post("/Task", json=task())).json()
    t["description"] = "changed, status the same"
    assert (await client.put(f"/Task/{t['id']}", json=t)).status_code == 200
    t["status"] = "cancelled"
    t["description"] = "now cancelled"
    assert (await client.put(f"/Task/{t['id']}", json=t)).status_code == 200
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 2)
    await asyncio.sleep(0.3)
    assert receiver.event_numbers() == [1, 2]


async def test_full_resource_payload_carries_the_version_of_the_event(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, content="full-resource"))
    await _wait_status(client, sub["id"], "active")
    t = (await client.post("/Task", json=task())).json()
    t["status"] = "cancelled"
    await client.put(f"/Task/{t['id']}", json=t)
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 2)
    first, second = [e for n in receiver.notifications("event-notification") for e in n["bundle"]["entry"][1:]]
    assert first["resource"]["status"] == "requested" and first["request"]["method"] == "POST"
    assert second["resource"]["status"] == "cancelled" and second["request"]["method"] == "PUT"
    assert second["resource"]["meta"]["versionId"] == "2"


async def test_empty_payload_names_no_focus(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, content="empty"))
    await _wait_status(client, sub["id"], "active")
    await client.post("/Task", json=task())
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 1)
    assert receiver.notifications("event-notification")[0]["focus"] == [None]


async def test_filters_select_events(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, filters=("Task?owner=Practitioner/p1",)))
    await _wait_status(client, sub["id"], "active")
    await client.post("/Task", json=task(owner="Practitioner/p2"))
    mine = (await client.post("/Task", json=task(owner="Practitioner/p1"))).json()
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 1)
    await asyncio.sleep(0.3)
    assert receiver.notifications("event-notification")[0]["focus"][0].endswith(f"Task/{mine['id']}")
    assert receiver.event_numbers() == [1]


async def test_custom_headers_and_hmac_signature(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, headers=("Authorization: Bearer hook-secret",),
                                             secret="k3y"))
    await _wait_status(client, sub["id"], "active")
    await client.post("/Task", json=task())
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 1)
    for (headers, _), raw in zip(receiver.received, receiver.raw):
        assert headers["authorization"] == "Bearer hook-secret"
        assert headers["content-type"] == "application/fhir+json"
        assert headers["x-telemed-signature"] == "sha256=" + hmac.new(b"k3y", raw, hashlib.sha256).hexdigest()


async def test_max_count_limits_events_per_notification(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, max_count=1))
    await _wait_status(client, sub["id"], "active")
    await receiver.down()
    for _ in range(3):
        await client.post("/Task", json=task())
    await asyncio.sleep(0.3)
    await receiver.up()
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 3)
    assert [n["events"] for n in receiver.notifications("event-notification")] == [[1], [2], [3]]


async def test_pending_events_are_batched(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    await _wait_status(client, sub["id"], "active")
    await receiver.down()
    for _ in range(4):
        await client.post("/Task", json=task())
    await asyncio.sleep(0.3)
    await receiver.up()
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 4)
    assert receiver.event_numbers() == [1, 2, 3, 4]
    assert len(receiver.notifications("event-notification")) < 4


async def test_receiver_down_then_up_gets_every_event_once_in_order(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    await _wait_status(client, sub["id"], "active")
    await receiver.down()
    for _ in range(6):
        r = await client.post("/Task", json=task())
        assert r.status_code == 201  # a failing endpoint never fails the request that caused the event
    errored = await _wait_status(client, sub["id"], "error")
    assert "connect" in errored["error"]
    await receiver.up()
    await receiver.wait_for(lambda: len(receiver.event_numbers()) == 6)
    await _wait_status(client, sub["id"], "active")
    assert receiver.event_numbers() == [1, 2, 3, 4, 5, 6]


async def test_endpoint_answering_errors_marks_error_and_keeps_events_for_replay(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    await _wait_status(client, sub["id"], "active")
    receiver.status = 500
    ids = [(await client.post("/Task", json=task())).json()["id"] for _ in range(3)]
    errored = await _wait_status(client, sub["id"], "error")
    assert "500" in errored["error"]
    status = (await client.get(f"/Subscription/{sub['id']}/$status")).json()
    assert status["type"] == "searchset"
    params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert params["status"]["valueCode"] == "error"
    assert params["type"]["valueCode"] == "query-status"
    assert params["events-since-subscription-start"]["valueString"] == "3"
    replay = (await client.get(f"/Subscription/{sub['id']}/$events", params={"eventsSinceNumber": "2"})).json()
    events = [p for p in replay["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"]
    assert [e["part"][0]["valueString"] for e in events] == ["2", "3"]
    assert [e["part"][2]["valueReference"]["reference"].rsplit("/", 1)[-1] for e in events] == ids[1:]
    full = (await client.get(f"/Subscription/{sub['id']}/$events", params={"content": "full-resource"})).json()
    assert [e["resource"]["id"] for e in full["entry"][1:]] == ids


async def test_events_parameters_are_checked(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    r = await client.get(f"/Subscription/{sub['id']}/$events", params={"eventsSinceNumber": "x"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["eventsSinceNumber"]
    r = await client.get(f"/Subscription/{sub['id']}/$events", params={"content": "everything"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["content"]


async def test_off_stops_deliveries(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url))
    active = await _wait_status(client, sub["id"], "active")
    active["status"] = "off"
    assert (await client.put(f"/Subscription/{sub['id']}", json=active)).json()["status"] == "off"
    await client.post("/Task", json=task())
    await asyncio.sleep(0.5)
    assert receiver.event_numbers() == []


async def test_heartbeats_when_idle(client, receiver):
    sub = await _create(client, subscription("task-status", receiver.url, heartbeat=1))
    await _wait_status(client, sub["id"], "active")
    await receiver.wait_for(lambda: len(receiver.notifications("heartbeat")) >= 2, timeout=6)
    beat = receiver.notifications("heartbeat")[0]
    assert beat["events"] == [] and beat["status"] == "active"
