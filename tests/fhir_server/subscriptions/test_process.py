"""Notifications across a real server process (uvicorn): a websocket subscriber, and events
still pending when the server is killed (kill -9) delivered after the restart (both stores)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import mongo_store_uri
from tests.fhir_server.server_process import ServerProcess
from tests.fhir_server.subscriptions.conftest import subscription, task
from tests.fhir_server.subscriptions.receiver import Receiver, status_of

ENV = {"TELEMED_NOTIFY_BACKOFF_MAX_SECONDS": "0.3", "TELEMED_NOTIFY_ERROR_AFTER": "2"}


@pytest.fixture(params=["sqlite", "mongo"])
def server_env(request) -> dict:
    if request.param == "mongo":
        return {**ENV, "TELEMED_STORE": mongo_store_uri(request.getfixturevalue("mongo_uri"))}
    return dict(ENV)


@pytest.fixture
def server(tmp_path, server_env):
    s = ServerProcess(tmp_path / "data", env=server_env).start()
    yield s
    s.stop()


async def _active(http: httpx.AsyncClient, sid: str) -> None:
    for _ in range(200):
        if (await http.get(f"/Subscription/{sid}")).json()["status"] == "active":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the Subscription never became active")


async def test_websocket_subscriber_gets_handshake_events_and_heartbeats(server):
    async with httpx.AsyncClient(base_url=server.base, headers=server.headers) as http:
        r = await http.post("/Subscription", json=subscription("task-status", channel="websocket", heartbeat=1,
                                                               content="full-resource"))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        await _active(http, sid)
        params = {p["name"]: p for p in (await http.get(f"/Subscription/{sid}/$get-ws-binding-token")).json()["parameter"]}
        url = params["websocket-url"]["valueUrl"]
        assert url == server.base.replace("http://", "ws://") + "/ws"
        async with connect(url) as ws:
            await ws.send(f"bind-with-token: {params['token']['valueString']}")
            hand = status_of(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
            assert hand["type"] == "handshake" and hand["subscription"]["reference"].endswith(f"Subscription/{sid}")
            created = (await http.post("/Task", json=task())).json()
            got = []
            while not any(g["type"] == "event-notification" for g in got):
                got.append(bundle := status_of(orjson.loads(await asyncio.wait_for(ws.recv(), 10))))
            note = next(g for g in got if g["type"] == "event-notification")
            assert note["events"] == [1] and note["focus"][0].endswith(f"Task/{created['id']}")
            while True:  # the heartbeat period is 1 s
                beat = status_of(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
                if beat["type"] == "heartbeat":
                    break
        async with connect(url) as ws:
            await ws.send("bind-with-token: not-a-token")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 4001


async def test_binding_token_only_for_websocket_subscriptions(server):
    async with httpx.AsyncClient(base_url=server.base, headers=server.headers) as http:
        sid = (await http.post("/Subscription", json=subscription("task-status", "http://127.0.0.1:9/h"))).json()["id"]
        r = await http.get(f"/Subscription/{sid}/$get-ws-binding-token")
        assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["Subscription.channel.type"]


async def test_events_pending_at_kill_9_are_delivered_after_restart(tmp_path, server_env):
    receiver = await Receiver().up()
    server = ServerProcess(tmp_path / "data", env=server_env).start()
    try:
        async with httpx.AsyncClient(base_url=server.base, headers=server.headers) as http:
            sid = (await http.post("/Subscription", json=subscription("task-status", receiver.url))).json()["id"]
            await _active(http, sid)
            await receiver.down()
            ids = [(await http.post("/Task", json=task())).json()["id"] for _ in range(5)]
            await asyncio.sleep(0.5)
        server.kill9()
        await receiver.up()
        server = ServerProcess(tmp_path / "data", server.port, env=server_env).start()
        await receiver.wait_for(lambda: len(receiver.event_numbers()) >= 5, timeout=30)
        await asyncio.sleep(0.5)
        assert receiver.event_numbers() == [1, 2, 3, 4, 5]
        focus = [f for n in receiver.notifications("event-notification") for f in n["focus"]]
        assert [f.rsplit("/", 1)[-1] for f in focus] == ids
    finally:
        server.stop()
        await receiver.down()
