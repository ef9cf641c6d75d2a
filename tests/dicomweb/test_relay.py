"""WADO-RS bodies relayed from a scripted PACS, through a real server process: whole and
unchanged however the PACS frames them (to the end of its connection, Content-Length, chunked),
never complete-looking when the PACS breaks off or stalls, and nothing left behind when the
caller goes away or stops reading. Run twice: with the kernel splice fast path, and with it turned off
(``TELEMED_DICOMWEB_SPLICE=0``: ASGI messages only). And QIDO-RS over kept-alive connections,
retried when the PACS has closed one."""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import httpx
import pytest

from dicomweb.relay import IDLE_SECONDS
from tests.dicomweb.conftest import start_server

pytestmark = [pytest.mark.req("UA-V.1"), pytest.mark.req("UA-VI.3")]

MB = 1 << 20


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# study UID -> how the scripted PACS answers: (framing, bytes sent, what happens then)
SCRIPTS = {
    "1.2.1": ("eof", 24 * MB, "close"),
    "1.2.2": ("chunked", 6 * MB, "close"),
    "1.2.3": ("length", 6 * MB, "close"),
    "1.2.4": ("eof", 3 * MB, "reset"),        # the connection is reset mid-answer
    "1.2.5": ("eof", 1 * MB, "stall"),        # the PACS stops sending and keeps the connection
    "1.2.6": ("length-short", 1 * MB, "close"),  # declares 6 MB, sends 1 MB, closes
    "1.2.7": ("chunked", 2 * MB, "reset"),
    "1.2.8": ("slow", 200_000, "close"),     # 10 kB every 0.1 s: slower than the proxy's timeout wakes
    "1.2.9": ("eof", 64 * MB, "close"),      # more than every buffer between the PACS and a caller holds
    "1.2.10": ("slow", 2_000_000, "close"),  # as 1.2.8, for 20 s
}
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=scripted'


class ScriptedPACS:
    """A loopback HTTP server answering ``GET /dicom-web/studies/{uid}`` by ``SCRIPTS``."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.stalled: list[socket.socket] = []
        self.cut: dict[str, float] = {}  # study UID -> when the proxy closed the connection mid-answer
        self.connections = 0
        self.keep_alive = True  # QIDO-RS answers leave the connection open (False: closed after)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket):
        request = b""
        while True:
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    conn.close()
                    return
                request += data
            head, _, request = request.partition(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            if path.split("?")[0] != "/dicom-web/studies":
                return self._study(conn, path)
            body = b'[{"0020000D": {"vr": "UI", "Value": ["1.2.1"]}}]'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            if not self.keep_alive:
                conn.close()  # as a PACS does to an idle connection, without saying so before
                return

    def _study(self, conn: socket.socket, path: str):
        uid = path.rsplit("/", 1)[-1]
        framing, size, then = SCRIPTS.get(uid, ("missing", 0, "close"))
        body = payload(size, sum(uid.encode()))
        try:
            if framing == "missing":
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nConnection: close\r\n"
                if framing == "length":
                    head += f"Content-Length: {size}\r\n"
                elif framing == "length-short":
                    head += f"Content-Length: {6 * MB}\r\n"
                elif framing == "chunked":
                    head += "Transfer-Encoding: chunked\r\n"
                conn.sendall(head.encode() + b"\r\n")
                step = 10_000 if framing == "slow" else 100_003  # odd sizes: pieces never line up with the proxy's
                for at in range(0, size, step):
                    piece = body[at:at + step]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece)
                    if framing == "slow":
                        time.sleep(0.1)
                if framing == "chunked" and then == "close":
                    conn.sendall(b"0\r\n\r\n")
            if then == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif then == "stall":
                self.stalled.append(conn)
                return
            conn.close()
        except OSError:
            self.cut[uid] = time.monotonic()
            conn.close()

    def close(self):
        self.sock.close()
        for c in self.stalled:
            c.close()


@pytest.fixture(scope="module")
def scripted():
    pacs = ScriptedPACS()
    yield pacs
    pacs.close()


@pytest.fixture(scope="module", params=["splice", "copy"])
def proxy(request, scripted, tmp_path_factory):
    env = {"TELEMED_DICOMWEB_UPSTREAM": scripted.url, "TELEMED_DICOMWEB_TIMEOUT": "1",
           "TELEMED_DICOMWEB_CALLER_TIMEOUT": "2", "TELEMED_DICOMWEB_SPLICE": "1" if request.param == "splice" else "0"}
    process = start_server(tmp_path_factory.mktemp(f"relay-{request.param}"), None, **env)
    process.path = request.param
    yield process
    process.stop()


def url(proxy, uid: str) -> str:
    return f"http://127.0.0.1:{proxy.port}/dicomweb/studies/{uid}"


def relayed_bytes(proxy) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{proxy.port}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("dicomweb_relayed_bytes_total{"):
            label = line.split('path="')[1].split('"')[0]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.parametrize("uid", ["1.2.1", "1.2.2", "1.2.3", "1.2.8"])
def test_a_body_arrives_whole_and_unchanged_however_the_pacs_frames_it(proxy, uid):
    framing, size, _ = SCRIPTS[uid]
    before = relayed_bytes(proxy)
    r = httpx.get(url(proxy, uid), headers=proxy.headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    assert r.content == payload(size, sum(uid.encode()))
    after = relayed_bytes(proxy)
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert sum(moved.values()) == size
    if proxy.path == "splice" and framing in ("eof", "slow"):
        assert moved.get("splice", 0) > size // 2  # the fast path carried the body
    if proxy.path == "copy":
        assert moved.get("splice", 0) == 0


@pytest.mark.parametrize("uid", ["1.2.4", "1.2.6", "1.2.7"])
def test_a_body_the_pacs_breaks_off_never_looks_complete(proxy, uid):
    with pytest.raises(httpx.HTTPError):  # a truncated chunked body, or one short of its length
        r = httpx.get(url(proxy, uid), headers=proxy.headers, timeout=30)
        r.raise_for_status()
        pytest.fail(f"a complete-looking answer of {len(r.content)} bytes")
    assert httpx.get(url(proxy, "1.2.3"), headers=proxy.headers, timeout=30).status_code == 200


def test_a_pacs_that_stalls_mid_body_is_cut_off_after_the_timeout(proxy):
    start = time.monotonic()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url(proxy, "1.2.5"), headers=proxy.headers, timeout=30).raise_for_status()
    assert time.monotonic() - start < 10


def test_a_caller_that_goes_away_leaves_no_open_connections_behind(proxy):
    fds = lambda: len(os.listdir(f"/proc/{proxy.proc.pid}/fd"))  # noqa: E731
    httpx.get(url(proxy, "1.2.3"), headers=proxy.headers, timeout=30)
    baseline = fds()
    for _ in range(5):
        with httpx.stream("GET", url(proxy, "1.2.1"), headers=proxy.headers, timeout=30) as r:
            for _chunk in r.iter_raw(MB):
                break  # read a little, then hang up
    deadline = time.time() + 10
    while fds() > baseline and time.time() < deadline:
        time.sleep(0.1)
    assert fds() <= baseline
    r = httpx.get(url(proxy, "1.2.1"), headers=proxy.headers, timeout=30)
    assert r.status_code == 200 and len(r.content) == SCRIPTS["1.2.1"][1]


def test_a_caller_that_leaves_a_slow_answer_frees_its_pacs_connection_at_once(proxy, scripted):
    scripted.cut.pop("1.2.10", None)
    with httpx.stream("GET", url(proxy, "1.2.10"), headers=proxy.headers, timeout=30) as r:
        next(r.iter_raw())
    left = time.monotonic()
    while "1.2.10" not in scripted.cut and time.monotonic() - left < 30:
        time.sleep(0.1)
    assert scripted.cut["1.2.10"] - left < 5  # the proxy hung up on the PACS: not after its 20 s answer


def test_a_caller_that_stops_reading_is_cut_off_after_the_caller_timeout(proxy):
    fds = lambda: len(os.listdir(f"/proc/{proxy.proc.pid}/fd"))  # noqa: E731
    httpx.get(url(proxy, "1.2.3"), headers=proxy.headers, timeout=30)
    baseline = fds()
    size = SCRIPTS["1.2.9"][1]
    got = 0
    with pytest.raises(httpx.HTTPError):  # the body ends short of its last chunk
        with httpx.stream("GET", url(proxy, "1.2.9"), headers=proxy.headers, timeout=30) as r:
            for chunk in r.iter_raw(MB):
                got += len(chunk)
                if got == len(chunk):
                    time.sleep(5)  # takes nothing for longer than TELEMED_DICOMWEB_CALLER_TIMEOUT (2 s)
    assert 0 < got < size
    deadline = time.time() + 10
    while fds() > baseline and time.time() < deadline:
        time.sleep(0.1)
    assert fds() <= baseline  # the PACS's connection and the moving thread's descriptors are closed
    r = httpx.get(url(proxy, "1.2.9"), headers=proxy.headers, timeout=30)
    assert r.status_code == 200 and len(r.content) == size


@pytest.fixture(scope="module")
def one_mover(scripted, tmp_path_factory):
    process = start_server(tmp_path_factory.mktemp("relay-one-mover"), None, TELEMED_DICOMWEB_UPSTREAM=scripted.url,
                           TELEMED_DICOMWEB_TIMEOUT="1", TELEMED_DICOMWEB_SPLICE_THREADS="1")
    yield process
    process.stop()


def test_an_answer_that_finds_no_free_mover_thread_goes_through_python(one_mover):
    slow = threading.Thread(target=lambda: httpx.get(url(one_mover, "1.2.8"), headers=one_mover.headers, timeout=30))
    before = relayed_bytes(one_mover)
    slow.start()  # about 2 s in the one splice thread
    deadline = time.time() + 5
    while relayed_bytes(one_mover).get("splice", 0) == before.get("splice", 0) and time.time() < deadline:
        time.sleep(0.05)
    during = relayed_bytes(one_mover)
    r = httpx.get(url(one_mover, "1.2.1"), headers=one_mover.headers, timeout=30)
    assert r.status_code == 200 and r.content == payload(SCRIPTS["1.2.1"][1], sum(b"1.2.1"))
    after = relayed_bytes(one_mover)
    assert after["copy"] - during.get("copy", 0) >= SCRIPTS["1.2.1"][1]  # copied: the thread was busy
    slow.join()
    again = relayed_bytes(one_mover)
    r = httpx.get(url(one_mover, "1.2.1"), headers=one_mover.headers, timeout=30)
    assert r.status_code == 200 and len(r.content) == SCRIPTS["1.2.1"][1]
    assert relayed_bytes(one_mover)["splice"] - again["splice"] > SCRIPTS["1.2.1"][1] // 2  # given back


def test_an_unknown_study_at_the_pacs_is_404(proxy):
    r = httpx.get(url(proxy, "1.2.99"), headers=proxy.headers, timeout=30)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_searches_reuse_a_kept_alive_connection(proxy, scripted):
    scripted.keep_alive = True
    before = scripted.connections
    for _ in range(5):
        r = httpx.get(f"http://127.0.0.1:{proxy.port}/dicomweb/studies", headers=proxy.headers, timeout=30)
        assert r.status_code == 200 and r.json()[0]["0020000D"]["Value"] == ["1.2.1"]
    assert scripted.connections - before == 1


def test_a_kept_connection_the_pacs_closed_is_retried_on_a_new_one(proxy, scripted):
    scripted.keep_alive = False
    time.sleep(IDLE_SECONDS + 0.2)  # connections kept from earlier tests are not reused any more
    try:
        before = scripted.connections
        for _ in range(4):
            r = httpx.get(f"http://127.0.0.1:{proxy.port}/dicomweb/studies", headers=proxy.headers, timeout=30)
            assert r.status_code == 200, r.text
        # Each search after the first is sent on the connection kept from the one before, finds
        # it closed, and is sent again on a new one.
        assert scripted.connections - before == 4
    finally:
        scripted.keep_alive = True
