"""rest-hook notification latency under a steady write rate, vs. its floor, in one run.

python bench/notify.py [--seconds 30] [--rate 50] [--max-count N] [--answer-ms MS] [--poll S] [--trace]
                       [--keep DIR]

A real server process (``telemed serve``: uvicorn, embedded SQLite store in a temp dir, default
settings: TELEMED_* variables are not passed on, except ``--poll`` as TELEMED_NOTIFY_POLL_SECONDS)
and, in this process, a loopback HTTP/1.1 receiver and the load generator (both plain asyncio
streams: httpx costs ten times the CPU per request, which 2 shared cores cannot spare).

One rest-hook Subscription on the ``task-status`` topic (id-only payload, no max-count unless
``--max-count``: the server's default of one event per notification), filtered to Tasks with the
code ``bench-event``; the floor's Tasks carry ``bench-floor`` (same size), so they cost the server
the same write and the same outbox read but notify no one. Three phases, Tasks POSTed at a steady
``--rate`` (open loop: each POST starts on its schedule, whatever the earlier ones are doing):

1. floor, ``--seconds``/2: each POST /Task, as soon as it is answered, followed by this process
   POSTing a real notification body (the first one received, not measured) to the receiver on a
   kept-alive connection: the least "durable write + one HTTP delivery" costs.
2. ours, ``--seconds``: event Tasks; each Task's notification is matched by its focus id.
3. floor again, ``--seconds``/2 (the machine is shared: the floor brackets the measurement).

Latency of an event: the receiver has read the notification minus this process has read the POST
/Task answer (the issue's "event-to-delivery", target p99 < 1 s), and from the POST's start
(write + notify); the same two for the floor. Printed: p50/p90/p99/max, the p99 (and p50) ratios,
the CPU each side used per Task and how long the server's threads waited for a CPU, and the
delivery check (asserted): every event Task notified exactly once, event numbers consecutive in
arrival order, and a Task answered before another was sent has the smaller event number. Every
timestamp is this process's ``time.perf_counter``.

Experiments: ``--max-count N`` (the Subscription's backport-max-count), ``--answer-ms MS`` (the
receiver answers each POST that much later: an endpoint farther away than loopback), ``--poll S``.
``--trace`` runs the same server with timers around the notification steps (dispatch, the notify
state's calls, the outbox, the HTTP send; monkeypatched in this file, nothing else changes) and
prints them per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import free_port, wait_ready  # noqa: E402
from fhir_server.auth.keys import KeyRing  # noqa: E402
from fhir_server.auth.tokens import system_token  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.subscriptions.subscription import CONTENT, FILTER, MAX_COUNT  # noqa: E402
from fhir_server.subscriptions.topics import BY_URL  # noqa: E402

TOPIC = next(url for url, t in BY_URL.items() if t.name == "task-status")
TASK = {"resourceType": "Task", "status": "requested", "intent": "order", "description": "bench/notify.py"}
EVENT, FLOOR = "bench-event", "bench-floor"


class Receiver:
    """HTTP/1.1 on loopback: records (arrival time, path, body) of every POST and answers 200."""

    def __init__(self, answer_after: float = 0.0):
        self.answer_after = answer_after  # seconds before answering (a slower endpoint)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.got: list[tuple[float, str, bytes]] = []
        self.arrived = asyncio.Event()
        self._server = None
        self._open: set[asyncio.StreamWriter] = set()
        self._parsed: list[tuple[float, str, dict]] = []  # got[i], parsed once

    async def up(self) -> "Receiver":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def down(self) -> None:
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.got.append((time.perf_counter(), lines[0].split(" ")[1], body))
                self.arrived.set()
                if self.answer_after:
                    await asyncio.sleep(self.answer_after)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    def notifications(self, path: str = "/hook") -> list[tuple[float, dict]]:
        """(arrival, {type, events: [(number, focus id)]}) of the notifications on ``path``."""
        for at, p, body in self.got[len(self._parsed):]:
            self._parsed.append((at, p, _status(body) if p == "/hook" else {}))
        return [(at, n) for at, p, n in self._parsed if p == path]


def _status(body: bytes) -> dict:
    """A notification's type and its events' (number, focus id)."""
    params = orjson.loads(body)["entry"][0]["resource"]["parameter"]
    events = []
    for x in params:
        if x["name"] == "notification-event":
            parts = {q["name"]: q for q in x["part"]}
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference")
            events.append((int(parts["event-number"]["valueString"]), focus.rsplit("/", 1)[-1] if focus else None))
    return {"type": next(x["valueCode"] for x in params if x["name"] == "type"), "events": events}


class Client:
    """The load generator's HTTP/1.1 client: keep-alive connections to one host, POST only,
    answers with a Content-Length. A tenth of httpx's CPU per request, so that on 2 shared cores
    the generator disturbs the server, and its own timestamps, as little as it can."""

    IDLE = 2.0  # seconds: a connection idle longer is closed, not reused (uvicorn closes them at 5 s)

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        rest = url.split("://", 1)[1]
        self.host, port = rest.split("/", 1)[0].split(":")
        self.port = int(port)
        self.prefix = "/" + rest.split("/", 1)[1] if "/" in rest else ""
        self._head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        while self._idle:
            used, reader, writer = self._idle.pop()
            if time.perf_counter() - used < self.IDLE:
                break
            writer.close()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._head}{extra}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        answer = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if "content-length" not in answer:
            raise SystemExit(f"an answer without Content-Length: {lines}")
        content = await reader.readexactly(int(answer["content-length"]))
        if answer.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((time.perf_counter(), reader, writer))
        return int(lines[0].split(" ", 2)[1]), answer, content

    def close(self) -> None:
        for _, _, writer in self._idle:
            writer.close()
        self._idle.clear()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """Time the threads of process ``pid`` were ready to run but waited for a CPU (/proc schedstat)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # the thread ended
    return total / 1e9


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]  # nearest rank


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<46}{pct(ms, 50):>8.1f}{pct(ms, 90):>8.1f}{pct(ms, 99):>8.1f}{max(ms):>8.1f}"
            f"{len(ms):>7}")


async def steady(seconds: float, rate: float, one) -> list:
    """Start ``one(i)`` at t0 + i/rate for ``seconds``; their results, in schedule order."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    jobs = []
    for i in range(int(seconds * rate)):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.append(loop.create_task(one(i)))
    return await asyncio.gather(*jobs)


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def task(code: str) -> bytes:
    return orjson.dumps({**TASK, "code": {"coding": [{"system": "urn:bench-notify", "code": code}]}})


async def run(base: str, headers: dict, args, server_pid: int) -> dict[str, list[tuple[float, float]]]:
    """Both measurements; the wall-clock windows of each phase (for --trace)."""
    receiver = await Receiver(args.answer_ms / 1000).up()
    fhir = httpx.AsyncClient(base_url=base, headers=headers, timeout=60)  # setting up and checking
    load = Client(base, headers)  # the measured POSTs, one connection per POST in flight
    hook = Client(receiver.url)
    post_headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    event, quiet = task(EVENT), task(FLOOR)  # the same size: only the code differs

    async def create_task(body: bytes) -> tuple[float, float, str]:
        sent = time.perf_counter()
        status, answer, text = await load.post("/Task", body, post_headers)
        acked = time.perf_counter()
        if status != 201:
            raise SystemExit(f"POST /Task answered {status}: {text[:300]!r}")
        return sent, acked, answer["location"].split("/Task/", 1)[1].split("/", 1)[0]

    async def floor_phase(seconds: float, first: int) -> list[tuple[float, float, int]]:
        async def write_then_deliver(i: int) -> tuple[float, float, int]:
            sent, acked, _ = await create_task(quiet)
            status, _, _ = await hook.post(f"/floor/{first + i}", sample, hook_headers)
            assert status == 200
            return sent, acked, first + i
        return await steady(seconds, args.rate, write_then_deliver)

    def events() -> list[tuple[float, int, str]]:
        return [(at, number, focus) for at, n in receiver.notifications() if n["type"] == "event-notification"
                for number, focus in n["events"]]

    try:
        for _ in range(20):  # warm-up: connections, token cache, first writes
            await create_task(quiet)
        # The Subscription: task-status, only Tasks with the code EVENT (the floor's Tasks have FLOOR).
        sub = {"resourceType": "Subscription", "status": "requested", "reason": "bench/notify.py", "criteria": TOPIC,
               "_criteria": {"extension": [{"url": FILTER, "valueString": f"Task?code=urn:bench-notify|{EVENT}"}]},
               "channel": {"type": "rest-hook", "endpoint": f"{receiver.url}/hook", "payload": "application/fhir+json",
                           "_payload": {"extension": [{"url": CONTENT, "valueCode": "id-only"}]}}}
        if args.max_count:
            sub["channel"]["extension"] = [{"url": MAX_COUNT, "valuePositiveInt": args.max_count}]
        r = await fhir.post("/Subscription", content=orjson.dumps(sub), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        await wait_until(lambda: [n["type"] for _, n in receiver.notifications()] == ["handshake"], 30, "the handshake")
        for _ in range(100):
            if (await fhir.get(f"/Subscription/{sid}")).json()["status"] == "active":
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit(f"Subscription/{sid} is not active")
        await create_task(event)  # one event, not measured: a real notification body for the floor
        await wait_until(lambda: len(events()) == 1, 30, "the first notification")
        sample = next(b for _, p, b in receiver.got if p == "/hook" and b"event-notification" in b)
        hook_headers = {"Content-Type": "application/fhir+json"}
        await hook.post("/floor/warm-up", sample, hook_headers)
        n_got = len(receiver.got)

        half = args.seconds / 2
        print(f"floor 1/2: {args.rate:g} Tasks/s for {half:g} s, each + one POST of {len(sample)} bytes to the "
              f"receiver  (load average {os.getloadavg()[0]:.1f})", flush=True)
        cpu = {"floor": [0.0] * 4, "ours": [0.0] * 4}  # server CPU s, this process's CPU s, wall s, server run-queue s

        def account(phase: str, since: tuple) -> tuple:
            now = (cpu_seconds(server_pid), time.process_time(), time.perf_counter(), runqueue_seconds(server_pid))
            for k in range(4):
                cpu[phase][k] += now[k] - since[k]
            return now

        mark = (cpu_seconds(server_pid), time.process_time(), time.perf_counter(), runqueue_seconds(server_pid))
        windows = {"ours": [], "floor": [(time.time(), 0.0)]}
        floor = await floor_phase(half, 0)
        windows["floor"][-1] = (windows["floor"][-1][0], time.time())
        mark = account("floor", mark)

        print(f"ours: {args.rate:g} Tasks/s for {args.seconds:g} s  (load average {os.getloadavg()[0]:.1f})", flush=True)
        windows["ours"].append((time.time(), 0.0))
        started = time.perf_counter()
        ours = await steady(args.seconds, args.rate, lambda i: create_task(event))
        sent_for = time.perf_counter() - started
        await wait_until(lambda: len(events()) >= 1 + len(ours), args.drain, f"{len(ours)} notifications")
        drained = time.perf_counter() - started
        windows["ours"][-1] = (windows["ours"][-1][0], time.time())
        mark = account("ours", mark)
        await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
        mark = (cpu_seconds(server_pid), time.process_time(), time.perf_counter(), runqueue_seconds(server_pid))

        print(f"floor 2/2: {args.rate:g} Tasks/s for {half:g} s  (load average {os.getloadavg()[0]:.1f})", flush=True)
        windows["floor"].append((time.time(), 0.0))
        floor += await floor_phase(half, len(floor))
        await wait_until(lambda: sum(p.startswith("/floor/") for _, p, _ in receiver.got[n_got:]) >= len(floor), 30,
                         "the floor's deliveries")
        windows["floor"][-1] = (windows["floor"][-1][0], time.time())
        account("floor", mark)
    finally:
        await fhir.aclose()
        load.close()
        hook.close()
        await receiver.down()

    # all, exactly once, in order (after the warm-up event, number 1)
    arrivals = events()[1:]
    notes = sum(1 for _, n in receiver.notifications() if n["type"] == "event-notification") - 1
    numbers = [number for _, number, _ in arrivals]
    assert numbers == list(range(2, len(ours) + 2)), f"event numbers not 2..{len(ours) + 1} in order: {numbers[:20]}..."
    foci = [focus for _, _, focus in arrivals]
    assert len(set(foci)) == len(foci), "a Task notified twice"
    assert set(foci) == {tid for _, _, tid in ours}, "the notified Tasks are not the ones created"
    delivered = {focus: (at, number) for at, number, focus in arrivals}
    by_ack = sorted(ours, key=lambda o: o[1])
    k, highest = 0, 0
    for sent, _, tid in sorted(ours):  # causal order: acknowledged before another was sent => smaller number
        while k < len(by_ack) and by_ack[k][1] < sent:
            highest = max(highest, delivered[by_ack[k][2]][1])
            k += 1
        assert delivered[tid][1] > highest, f"Task/{tid} numbered before a Task acknowledged earlier"
    assert all(p.startswith("/floor/") or p == "/hook" for _, p, _ in receiver.got)
    got = {int(p.rsplit("/", 1)[1]): at for at, p, _ in receiver.got[n_got:] if p.startswith("/floor/")}

    ours_ack = [delivered[tid][0] - acked for _, acked, tid in ours]
    ours_all = [delivered[tid][0] - sent for sent, _, tid in ours]
    floor_ack = [got[i] - acked for _, acked, i in floor]
    floor_all = [got[i] - sent for sent, _, i in floor]
    print()
    print(f"{len(ours)} Tasks in {sent_for:.1f} s ({len(ours) / sent_for:.1f}/s); the last notified "
          f"{drained - sent_for:.2f} s after the last POST; {len(ours)} events in {notes} notifications: "
          f"each Task exactly once, numbers 2..{len(ours) + 1} in order")
    print(f"{'latency (ms)':<46}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>7}")
    print(row("ours  event-to-delivery (ack -> receiver)", ours_ack))
    print(row("floor one delivery      (ack -> receiver)", floor_ack))
    print(row("ours  write + notify   (POST -> receiver)", ours_all))
    print(row("floor write + delivery (POST -> receiver)", floor_all))
    early = sum(1 for x in ours_ack if x < 0)
    if early:  # this process saw the answer late (starved of CPU): the ack-based latencies are too low
        print(f"   ({early} notifications arrived before this process had read their POST's answer)")
    print(row("ours  POST /Task round trip", [a - s for s, a, _ in ours]))
    print(row("floor POST /Task round trip", [a - s for s, a, _ in floor]))
    print(f"ratio p99 / p99-floor (write + notify / write + delivery): {pct(ours_all, 99) / pct(floor_all, 99):.1f}"
          f"   (p50: {pct(ours_all, 50) / pct(floor_all, 50):.1f}; event-to-delivery p99 / the floor's delivery p99: "
          f"{pct(ours_ack, 99) / max(pct(floor_ack, 99), 1e-6):.0f})")
    for phase, n in (("ours", len(ours)), ("floor", len(floor))):
        server_s, bench_s, wall, queued = cpu[phase]
        print(f"{phase + ' CPU':<11} server {server_s * 1000 / n:5.1f} ms per Task ({server_s / wall:4.0%} of a core; its "
              f"threads waited {queued / wall:4.0%} of the time for a CPU), this process {bench_s * 1000 / n:4.1f} ms "
              f"per Task ({bench_s / wall:4.0%}), over {wall:.1f} s")
    print(f"machine: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}")
    p99 = pct(ours_ack, 99)
    print(f"target p99 event-to-delivery < 1000 ms: {'met' if p99 < 1.0 else 'MISSED'} ({p99 * 1000:.0f} ms)")
    return windows


# --- --trace: the same server (``telemed serve``'s settings, logging and uvicorn call) with timers on
# the notification path, written as JSON when it stops. Started as ``python bench/notify.py _serve``.

def _age(instant: str) -> float:
    from datetime import datetime

    return time.time() - datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


def _serve_traced(data: Path, port: int, out: Path) -> None:
    import collections
    import json

    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.cli import configure_logging
    from fhir_server.storage.sqlite import SQLiteStore
    from fhir_server.subscriptions import service
    from fhir_server.subscriptions.state import SQLiteNotifyState

    seen: dict[str, list[float]] = collections.defaultdict(list)

    def timed(cls, name: str, label: str, after=None) -> None:
        fn = getattr(cls, name)

        async def wrapper(*a, **k):
            t = time.perf_counter()
            result = await fn(*a, **k)
            seen[label].append((time.time(), time.perf_counter() - t))
            if after is not None:
                after(a, k, result)
            return result
        setattr(cls, name, wrapper)

    def on_changes(a, k, result):  # outbox entries of watched types: how old when the dispatcher reads them
        if result:
            seen["count: outbox entries per dispatch"].append((time.time(), len(result)))
            seen["age of a Task change at dispatch"] += [(time.time(), _age(c.at)) for c in result if c.type == "Task"]

    def on_counters(a, k, result):
        seen["count: events queued, not yet delivered"].append((time.time(), result[0] - result[1]))

    def on_send(a, k, result):
        kind, events = a[2], a[3]
        if kind == "event-notification":
            seen["age of an event when delivered"] += [(time.time(), _age(e.at)) for e in events]

    for name in ("add_events", "counters", "events", "delivered"):
        timed(SQLiteNotifyState, name, f"state.{name}", on_counters if name == "counters" else None)
    timed(SQLiteStore, "changes", "store.changes", on_changes)
    timed(SQLiteStore, "forget_changes", "store.forget_changes")
    timed(SQLiteStore, "commit", "store.commit")
    timed(service.Notifications, "dispatch", "notify.dispatch")
    timed(service.Notifications, "notification", "notify.notification (bundle + focus check)")
    timed(service.Notifications, "_send", "notify._send (bundle + HTTP POST)", on_send)
    start = service.Notifications.start

    async def start_with_lag_probe(self):
        async def probe():  # event-loop lag: how late a 10 ms sleep wakes up
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                seen["event loop lag (10 ms sleep overshoot)"].append((time.time(), time.perf_counter() - t - 0.01))
        self._tasks.append(asyncio.get_running_loop().create_task(probe()))
        await start(self)
    service.Notifications.start = start_with_lag_probe
    stop = service.Notifications.stop

    async def stop_and_write(self):  # at shutdown: uvicorn re-raises SIGTERM once run() returns
        await stop(self)
        out.write_text(json.dumps(seen))
    service.Notifications.stop = stop_and_write

    settings = Settings(data=data)
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False)


def trace_report(path: Path, windows: dict[str, list[tuple[float, float]]]) -> None:
    """The server's timings in each phase (``windows``, wall clock; ours: until the last notification)."""
    import json

    seen = json.loads(path.read_text())

    def within(name: str, phase: str) -> list[float]:
        return [x for at, x in seen[name] if any(a <= at <= b for a, b in windows[phase])]

    print("\nserver-side trace (--trace): ms, except counts")
    print(f"{'':<44}{'ours: n':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'sum s':>8}{'floor: p50':>12}{'p99':>8}")
    for name in sorted(seen):
        v = within(name, "ours")
        if not v:
            continue
        count = name.startswith("count:")
        scale = 1 if count else 1000
        w, f = [x * scale for x in v], [x * scale for x in within(name, "floor")]
        total = "" if count or name.startswith(("age", "event loop")) else f"{sum(v):.2f}"
        other = f"{pct(f, 50):>12.1f}{pct(f, 99):>8.1f}" if f else f"{'-':>12}{'-':>8}"
        print(f"{name:<44}{len(w):>8}{pct(w, 50):>8.1f}{pct(w, 90):>8.1f}{pct(w, 99):>8.1f}{max(w):>8.1f}{total:>8}{other}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30, help="how long Tasks are created, per phase")
    ap.add_argument("--rate", type=float, default=50, help="Tasks (events) per second")
    ap.add_argument("--poll", type=float, default=None, help="TELEMED_NOTIFY_POLL_SECONDS (default: the server's)")
    ap.add_argument("--max-count", type=int, default=None,
                    help="the Subscription's backport-max-count (events per notification; default: the server's)")
    ap.add_argument("--answer-ms", type=float, default=0,
                    help="the receiver answers each POST this many ms after reading it (an endpoint farther away)")
    ap.add_argument("--drain", type=float, default=120, help="seconds to wait for the last notifications")
    ap.add_argument("--keep", type=Path, default=None, help="keep the data directory and server log here")
    ap.add_argument("--trace", action="store_true",
                    help="time the server's notification steps (monkeypatched timers) and print them")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-notify-"))
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}  # the server's defaults
    if args.poll is not None:
        env["TELEMED_NOTIFY_POLL_SECONDS"] = str(args.poll)
    log = open(tmp / "server.log", "ab")
    cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--data", str(data), "--port", str(port)]
    if args.trace:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_serve", str(data), str(port), str(tmp / "trace.json")]
    server = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}/fhir"
    windows = None
    try:
        wait_ready(f"{base}/metadata")
        settings = Settings(data=data)
        print(f"server pid {server.pid}, data {data}, notify_poll_seconds "
              f"{args.poll if args.poll is not None else settings.notify_poll_seconds}", flush=True)
        token = system_token(KeyRing(settings.keys_path()), settings, base, "system/*.*", lifetime=3600,
                             subject="bench-notify")
        windows = asyncio.run(run(base, {"Authorization": f"Bearer {token}"}, args, server.pid))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        if args.trace and windows is not None and (tmp / "trace.json").exists():
            trace_report(tmp / "trace.json", windows)
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_serve"]:
        _serve_traced(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
