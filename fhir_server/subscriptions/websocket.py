"""Websocket notifications: ``$get-ws-binding-token`` and the websocket endpoint ``/fhir/ws``.

``GET|POST [base]/Subscription/{id}/$get-ws-binding-token`` (the Subscription's owner, or a system
client) answers Parameters: ``token``, ``expiration`` (``TOKEN_SECONDS`` later), ``subscription``
and ``websocket-url``. A client connects to that URL and sends the text ``bind-with-token: <token>``;
the server answers a ``handshake`` notification, then sends every event queued for the
Subscription after the binding as an ``event-notification`` Bundle (missed ones can be read with
``$events``), and ``heartbeat`` Bundles at the Subscription's heartbeat period. A bad or expired
token closes the connection with code 4001 and the reason.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime, timezone

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server.auth.access import for_request
from fhir_server.http import base_url, json_response
from fhir_server.interactions.read import visible_current
from fhir_server.services import Services
from fhir_server.subscriptions.subscription import parse

TOKEN_SECONDS = 300
BIND = "bind-with-token:"


async def binding_token(request: Request, svc: Services) -> Response:
    access = await for_request(request, svc)
    stored = await visible_current(svc, access, "Subscription", request.path_params["id"])
    sub = parse(orjson.loads(stored.json))
    if sub.channel != "websocket":
        from fhir_server.errors import unprocessable

        raise unprocessable(f"Subscription/{sub.id} has channel {sub.channel}, not websocket", "Subscription.channel.type")
    token = secrets.token_urlsafe(32)
    expires = time.time() + TOKEN_SECONDS
    await svc.notify.state.put_token(token, {"subscription": sub.id}, expires)
    url = base_url(request, svc.settings.base_url)
    ws_url = ("wss://" + url.removeprefix("https://") if url.startswith("https://")
              else "ws://" + url.removeprefix("http://")) + "/ws"
    svc.auditor.record(request, "operation", [stored])
    return json_response({"resourceType": "Parameters", "parameter": [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds")},
        {"name": "subscription", "valueString": f"{url}/Subscription/{sub.id}"},
        {"name": "websocket-url", "valueUrl": ws_url},
    ]})


async def endpoint(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    try:
        text = await asyncio.wait_for(websocket.receive_text(), 30)
    except (asyncio.TimeoutError, WebSocketDisconnect):
        await _close(websocket, 4001, "send 'bind-with-token: <token>' first")
        return
    if not text.startswith(BIND):
        await _close(websocket, 4001, "the first message must be 'bind-with-token: <token>'")
        return
    found = await svc.notify.state.get_token(text[len(BIND):].strip())
    sub = svc.notify.subs.get(found["subscription"]) if found else None
    if sub is None:
        stored = await svc.store.read("Subscription", found["subscription"]) if found else None
        sub = parse(orjson.loads(stored.json)) if stored is not None and not stored.deleted else None
    if sub is None:
        await _close(websocket, 4001, "unknown or expired binding token")
        return
    await _serve(websocket, svc, sub.id)


async def _serve(websocket: WebSocket, svc: Services, sid: str) -> None:
    notify = svc.notify
    wake = asyncio.Event()
    notify.sockets.setdefault(sid, set()).add(wake)
    closed = asyncio.get_running_loop().create_task(_until_closed(websocket))
    try:
        sub = await _current(svc, sid)
        sent = (await notify.state.counters(sid))[0]
        await websocket.send_text((await notify.notification(sub, "handshake", [], sent)).decode())
        last_sent = time.monotonic()
        while not closed.done():
            sub = await _current(svc, sid)
            if sub is None or sub.status == "off":
                break
            last = (await notify.state.counters(sid))[0]
            if last > sent:
                events = await notify.state.events(sid, sent, None, sub.max_count)
                await websocket.send_text((await notify.notification(sub, "event-notification", events, last)).decode())
                sent = events[-1].number
                last_sent = time.monotonic()
                continue
            if sub.heartbeat and time.monotonic() - last_sent >= sub.heartbeat:
                await websocket.send_text((await notify.notification(sub, "heartbeat", [], last)).decode())
                last_sent = time.monotonic()
            wake.clear()
            # Woken by this process's dispatcher; another process's dispatcher is seen by polling.
            timeout = min(1.0, sub.heartbeat) if sub.heartbeat else 1.0
            waiter = asyncio.ensure_future(wake.wait())
            await asyncio.wait([closed, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        notify.sockets.get(sid, set()).discard(wake)
        closed.cancel()
    if not closed.done():
        await _close(websocket, 1000, "subscription ended")


async def _current(svc: Services, sid: str):
    sub = svc.notify.subs.get(sid)
    if sub is None:
        stored = await svc.store.read("Subscription", sid)
        sub = parse(orjson.loads(stored.json)) if stored is not None and not stored.deleted else None
    return sub


async def _until_closed(websocket: WebSocket) -> None:
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason)
    except RuntimeError:
        pass
