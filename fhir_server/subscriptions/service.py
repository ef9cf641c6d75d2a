"""Notifications: from the store's outbox to subscribers, durably and in order.

1. Every committed version of a watched type is an outbox entry, written by the store in the
   same transaction as the change (``storage.port.NOTIFIED_TYPES``): a change is never without
   its entry, and an entry never without its change.
2. The dispatcher (one server process at a time holds its lease) reads entries oldest first,
   compares each version with the one before it to see which topics fire, and queues an event
   for every Subscription of the topic whose filters pass, and an e-mail for every participant
   concerned (``email.py``). Queueing is idempotent, so an entry read again after a crash adds
   nothing; only then are the entries deleted.
3. One delivery loop per rest-hook or e-mail Subscription sends its events in number order:
   handshake first (``requested`` -> ``active``), then notifications of up to ``max-count``
   events, heartbeats when idle. A failure is retried with exponential backoff (at most
   ``notify_backoff_max_seconds`` apart) and never reaches the request that caused the event;
   ``notify_error_after`` failures in a row mark the Subscription ``error`` with the reason,
   and the next success marks it ``active`` again. Websocket subscribers are served by their
   connections (``websocket.py``). Participant e-mails have their own loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
import uuid

import httpx
import orjson

from fhir_server.search.extract import extract
from fhir_server.storage.port import Stored, VersionConflict
from fhir_server.subscriptions import email, notification
from fhir_server.subscriptions.state import NotifyState
from fhir_server.subscriptions.subscription import Parsed, matches, parse
from fhir_server.subscriptions.topics import WATCHED, fired
from fhir_server.write import new_version

log = logging.getLogger(__name__)
BATCH = 500
LEASE_SECONDS = 15.0
SIGNATURE = "X-Telemed-Signature"


def backoff(failures: int, ceiling: float) -> float:
    return min(ceiling, 0.25 * 2 ** min(failures, 20)) * random.uniform(0.8, 1.0)


class Notifications:
    def __init__(self, svc, state: NotifyState):
        self.svc = svc
        self.state = state
        self.settings = svc.settings
        self.holder = str(uuid.uuid4())
        self.leader = False
        self.subs: dict[str, Parsed] = {}
        self.loops: dict[str, asyncio.Task] = {}
        self.wakes: dict[str, asyncio.Event] = {}
        self.sockets: dict[str, set[asyncio.Event]] = {}  # websocket connections bound, by subscription
        self.mail_topics = {t.strip() for t in self.settings.notify_email_topics.split(",") if t.strip()}
        self._mail_wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._http: httpx.AsyncClient | None = None
        self._stopping = False

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._tasks.append(asyncio.get_running_loop().create_task(self._run(), name="notify-dispatcher"))

    async def stop(self) -> None:
        # A flag as well as cancel(): PyMongo's async API can swallow a CancelledError that lands
        # inside one of its calls, and the loop would go on.
        self._stopping = True
        self._mail_wake.set()
        for wake in self.wakes.values():
            wake.set()
        tasks = [*self._tasks, *self.loops.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            if pending:
                log.warning("%d notification tasks did not stop within 5 s", len(pending))
        self._tasks.clear()
        self.loops.clear()
        if self._http is not None:
            await self._http.aclose()
        await self.state.close()

    async def _run(self) -> None:
        renewed = 0.0
        while not self._stopping:
            try:
                if time.monotonic() - renewed > LEASE_SECONDS / 3:
                    has = await self.state.lease(self.holder, LEASE_SECONDS)
                    renewed = time.monotonic()
                    if has and not self.leader:
                        await self._lead()
                    elif not has and self.leader:
                        self._step_down()
                if not self.leader:
                    await asyncio.sleep(LEASE_SECONDS / 3)
                    continue
                if await self.dispatch() < BATCH:
                    await asyncio.sleep(self.settings.notify_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the outbox keeps the entries for the next round
                log.exception("notification dispatch failed; retrying")
                await asyncio.sleep(1.0)

    async def _lead(self) -> None:
        self.leader = True
        after = None
        while True:
            page = await self.svc.store.scan("Subscription", after, 500)
            for stored in page:
                self._known(stored)
            if len(page) < 500:
                break
            after = page[-1].id
        if self.settings.smtp_host:
            self.loops[""] = asyncio.get_running_loop().create_task(self._mail_loop(), name="notify-mail")

    def _step_down(self) -> None:
        self.leader = False
        for task in self.loops.values():
            task.cancel()
        self.loops.clear()

    def _known(self, stored: Stored | None) -> None:
        """Keep the Subscription's current version in mind and its delivery loop running."""
        if stored is None:
            return
        sid = stored.id
        try:
            sub = parse(orjson.loads(stored.json)) if not stored.deleted else None
        except Exception:  # noqa: BLE001 - written before this server version understood it
            log.warning("Subscription/%s cannot be served; ignored", sid)
            sub = None
        if sub is None:
            self.subs.pop(sid, None)
        else:
            self.subs[sid] = sub
        if self.leader and sub is not None and sub.channel in ("rest-hook", "email", "websocket"):
            task = self.loops.get(sid)
            if task is None or task.done():
                self.wakes[sid] = asyncio.Event()
                self.loops[sid] = asyncio.get_running_loop().create_task(self._deliver_loop(sid), name=f"notify-{sid}")
        self._wake(sid)

    def _wake(self, sid: str) -> None:
        if sid in self.wakes:
            self.wakes[sid].set()
        for bound in self.sockets.get(sid, ()):
            bound.set()

    # --- 2. dispatch ---------------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Turn one batch of outbox entries into queued events and e-mails; how many entries."""
        store = self.svc.store
        changes = await store.changes(BATCH)
        if not changes:
            return 0
        events: dict[str, list] = {}
        mails = []
        for ch in changes:
            if ch.type == "Subscription":
                # The version this entry names, not a cached current one: entries come in order.
                current = await store.vread("Subscription", ch.id, ch.version)
                self._known(current)
                if current is not None and current.deleted:
                    await self.state.drop(ch.id)  # its events go with it
                continue
            if ch.type not in WATCHED:
                continue
            after_s = await store.vread(ch.type, ch.id, ch.version)
            after = orjson.loads(after_s.json) if after_s is not None and not after_s.deleted else None
            before = None
            if ch.version > 1:
                before_s = await store.vread(ch.type, ch.id, ch.version - 1)
                before = orjson.loads(before_s.json) if before_s is not None and not before_s.deleted else None
            topics = fired(ch.type, before, after)
            if not topics:
                continue
            index = extract(after or before)
            source = f"{ch.type}/{ch.id}/{ch.version}"
            for topic in topics:
                for sid, sub in self.subs.items():
                    if sub.topic is topic and sub.status != "off" and matches(sub, ch.type, index):
                        events.setdefault(sid, []).append((source, topic.url, f"{ch.type}/{ch.id}", ch.version, ch.at))
                if self.settings.smtp_host and topic.name in self.mail_topics and after is not None:
                    mails += await email.mails_for(store, topic.name, after, source, self._link(f"{ch.type}/{ch.id}"))
        for sid, items in events.items():
            await self.state.add_events(sid, items)
        if mails:
            mails = list({m.key: m for m in reversed(mails)}.values())[::-1]  # the first per key
            await self.state.queue_mail(mails, time.time())
            self._mail_wake.set()
        await store.forget_changes([c.key for c in changes])
        for sid in events:
            self._wake(sid)
        return len(changes)

    def _link(self, path: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/{path}" if self.settings.base_url else path

    # --- 3. delivery -------------------------------------------------------------------------------

    async def _deliver_loop(self, sid: str) -> None:
        failures, failing_since, last_sent = 0, 0.0, time.monotonic()
        wake = self.wakes[sid]
        while not self._stopping:
            sub = self.subs.get(sid)
            if sub is None or sub.status == "off":
                self.loops.pop(sid, None)
                return
            give_up = self.settings.notify_give_up_seconds
            if failures and give_up and time.monotonic() - failing_since > give_up:
                log.warning("Subscription/%s: deliveries stopped after %.0f s of failures", sid, give_up)
                self.loops.pop(sid, None)
                return
            if sub.channel == "websocket":  # served by its connections; it needs no handshake
                if sub.status == "requested":
                    await self._set_status(sub, "active")
                self.loops.pop(sid, None)
                return
            try:
                if sub.status == "requested":
                    await self._send(sub, "handshake", [])
                    await self._set_status(sub, "active")
                    last_sent = time.monotonic()
                    failures = 0
                    continue
                last, delivered = await self.state.counters(sid)
                if delivered < last:
                    pending = await self.state.events(sid, delivered, None, sub.max_count)
                    await self._send(sub, "event-notification", pending, last)
                    await self.state.delivered(sid, pending[-1].number)
                    last_sent = time.monotonic()
                    if failures or sub.status == "error":
                        await self._set_status(sub, "active")
                    failures = 0
                    continue
                if sub.heartbeat and time.monotonic() - last_sent >= sub.heartbeat:
                    await self._send(sub, "heartbeat", [], last)
                    last_sent = time.monotonic()
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed delivery is retried, never raised
                failures += 1
                failing_since = failing_since if failures > 1 else time.monotonic()
                reason = _reason(exc)
                log.info("Subscription/%s: delivery failed (%d in a row): %s", sid, failures, reason)
                if failures >= self.settings.notify_error_after and sub.status != "error":
                    await self._set_status(sub, "error", reason)
                await asyncio.sleep(backoff(failures, self.settings.notify_backoff_max_seconds))
                continue
            wake.clear()
            timeout = max(0.05, sub.heartbeat - (time.monotonic() - last_sent)) if sub.heartbeat else None
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def notification(self, sub: Parsed, kind: str, events, since_start: int | None = None,
                           content: str | None = None) -> bytes:
        """The notification Bundle for ``events``, each focus checked against the grant now."""
        if since_start is None:
            since_start = (await self.state.counters(sub.id))[0]
        if content is not None and content != sub.content:
            sub = _with_content(sub, content)
        checked = [(e, await notification.visible_focus(self.svc, sub, e) if sub.content != "empty" else None)
                   for e in events]
        error = None
        if sub.status == "error":
            stored = await self.svc.store.read("Subscription", sub.id)
            error = orjson.loads(stored.json).get("error") if stored is not None and not stored.deleted else None
        return notification.bundle(self.settings.base_url.rstrip("/"), sub, sub.status, kind, since_start, checked,
                                   error)

    async def _send(self, sub: Parsed, kind: str, events, since_start: int | None = None) -> None:
        if sub.channel == "email":
            if kind != "event-notification":
                return  # nothing to mail for a handshake or heartbeat
            for e in events:
                # The focus is named only when the grant may read it, as in a notification Bundle.
                shown = sub.content != "empty" and await notification.visible_focus(self.svc, sub, e) is not None
                subject, text = email.render("en", "subscription", {
                    "subscription": f"Subscription/{sub.id}", "topic": sub.topic.title, "number": e.number, "at": e.at,
                    "focus": self._link(e.focus) if shown else "", "link": self._link(f"Subscription/{sub.id}")})
                await email.send(self.settings, email.Mail(f"{sub.id}/{e.number}", sub.endpoint.removeprefix("mailto:"),
                                                           subject, text))
            return
        body = await self.notification(sub, kind, events, since_start)
        headers = {"Content-Type": "application/fhir+json", **dict(sub.headers)}
        if sub.secret:
            headers[SIGNATURE] = "sha256=" + hmac.new(sub.secret.encode(), body, hashlib.sha256).hexdigest()
        response = await self._http.post(sub.endpoint, content=body, headers=headers, timeout=sub.timeout)
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"{sub.endpoint} answered {response.status_code}")

    async def _set_status(self, sub: Parsed, status: str, error: str | None = None) -> None:
        """Write the Subscription's new status, unless it changed since ``sub`` was read (then
        the dispatcher brings the newer version and the loop acts on it)."""
        stored = await self.svc.store.read("Subscription", sub.id)
        if stored is None or stored.deleted or stored.version != sub.version:
            return
        resource = orjson.loads(stored.json)
        resource["status"] = status
        if error:
            resource["error"] = error
        else:
            resource.pop("error", None)
        write = new_version(resource, sub.id, stored.version + 1, "PUT")
        try:
            await self.svc.store.commit([write])
        except VersionConflict:
            return
        self.subs[sub.id] = parse(orjson.loads(write.json))

    # --- participant e-mail -------------------------------------------------------------------

    async def _mail_loop(self) -> None:
        while not self._stopping:
            try:
                due = await self.state.due_mail(time.time(), 50)
                for mail in due:
                    try:
                        await email.send(self.settings, mail)
                    except Exception as exc:  # noqa: BLE001 - retried later
                        at = time.time() + backoff(mail.attempts + 1, self.settings.notify_backoff_max_seconds)
                        await self.state.mail_retry(mail.key, mail.attempts + 1, at, _reason(exc))
                        continue
                    await self.state.mail_sent(mail.key)
                if len(due) == 50:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; tried again
                log.exception("participant e-mail loop failed; retrying")
            self._mail_wake.clear()
            try:
                await asyncio.wait_for(self._mail_wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass


class DeliveryFailed(Exception):
    pass


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the endpoint did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the endpoint"
    return str(exc) or type(exc).__name__


def _with_content(sub: Parsed, content: str) -> Parsed:
    from dataclasses import replace

    return replace(sub, content=content)

