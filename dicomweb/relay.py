"""Raw HTTP/1.1 to the PACS for everything but STOW-RS: WADO-RS bodies relayed as they arrive,
QIDO-RS and metadata answers read whole over kept-alive connections.

Why not httpx: a study of hundreds of MB crossed the proxy in httpcore's 64 KiB reads, each
paying for an anyio cancel scope, an h11 event and buffer copies (the proxy spent 5-6 s of CPU
per GiB, 0.34-0.41x direct throughput), and a QIDO-RS about 3 ms of CPU in httpx and httpcore
(4.5 ms per query before, 1.7 ms after; docs/dicomweb-results.md). Here an asyncio
``BufferedProtocol`` parses the status line and headers with httptools (C), then reads a body
framed by Content-Length or by the end of the connection (as Orthanc sends multipart answers)
straight into pieces of ``PIECE_BYTES``, which are handed on as they fill: the socket's bytes
land where the caller's are taken from, pieces are reused once the caller has let go of them,
and per-piece Python work is a few calls. A chunked body is unframed by httptools and copied
into pieces. Memory stays bounded: reading
pauses while ``HIGH_WATER`` pieces wait for the caller. ``Relayed`` sends the answer on, by
``splice`` in the kernel when it can, else as ASGI messages.

A streamed answer has a connection of its own (``Connection: close``): nothing of a half-read
answer is ever reused. Answers read whole (``keep``) use up to ``IDLE_CONNECTIONS`` kept-alive
connections, none reused after ``IDLE_SECONDS``; one the PACS closed meanwhile is retried on a
new connection. Timeouts: connecting, the status line and headers, and every further wait for
bytes of the body each get ``timeout`` seconds; the first two are 504, a PACS that cannot be
reached 502, and a body that stops or breaks off is cut short (its status is already sent).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import ssl
import time
from typing import AsyncIterator
from urllib.parse import urlsplit

import httptools
from prometheus_client import Counter
from starlette.responses import Response, StreamingResponse

from dicomweb.rewrite import Rewriter
from dicomweb.upstream import PASSED, bad_gateway, gateway_timeout
from fhir_server.metrics import REGISTRY

log = logging.getLogger(__name__)

HEAD_BYTES = 64 << 10    # one read of the status line and headers
PIECE_BYTES = 256 << 10  # a body is read into, and handed on in, pieces of this size
SMALL_PIECE_BYTES = 16 << 10  # for answers read whole (QIDO-RS, metadata)
IDLE_CONNECTIONS = 8     # kept-alive connections to the PACS (QIDO-RS, metadata)
IDLE_SECONDS = 0.8       # a kept connection older than this is not reused (Orthanc closes at 1 s)
HIGH_WATER = 8           # reading from the PACS pauses while this many pieces wait for the caller
ERROR_BYTES = 64 << 10   # of a non-2xx answer's body, for its error message


# Bytes of WADO-RS bodies sent on, by path: "splice" (in the kernel) or "copy" (ASGI messages).
RELAYED = Counter("dicomweb_relayed_bytes_total", "WADO-RS body bytes passed from the PACS to callers", ["path"],
                  registry=REGISTRY)
COPIED = RELAYED.labels("copy")


class Broken(Exception):
    """The PACS's answer broke off, did not parse, or stopped coming."""


class _Answer(asyncio.BufferedProtocol):
    """Reads one answer. Until its headers are complete, bytes go through httptools; then a body
    framed by Content-Length or by the end of the connection is read straight into pieces (the
    socket's bytes land where the caller's are taken from: no copy in Python), and a chunked
    body is still unframed by httptools and copied into pieces."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = PIECE_BYTES, on_idle=None):
        self.loop = loop
        self.size = size
        self.on_idle = on_idle  # takes the connection back once the answer is complete (keep-alive)
        self.released = False
        self.head = memoryview(bytearray(HEAD_BYTES))
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_done: asyncio.Future = loop.create_future()
        self.length: int | None = None  # Content-Length
        self.chunked = False
        self.raw = False  # past the headers of a body that is not chunked: read into pieces directly
        self.left: int | None = None  # bytes of a Content-Length body still to come
        self.spare: list[bytearray] = []  # pieces the caller is done with, to be filled again
        self.piece = bytearray(size)
        self.fill = 0
        self.ready: collections.deque[bytearray] = collections.deque()
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.paused = False
        self.received = 0  # body bytes so far (a wait that saw some is no stall)

    # asyncio side
    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self.raw:
            return self.head
        return memoryview(self.piece)[self.fill:]

    def buffer_updated(self, nbytes: int) -> None:
        if self.raw:
            if self.left is not None:
                nbytes = min(nbytes, self.left)
                self.left -= nbytes
            self.fill += nbytes
            self.received += nbytes
            if self.fill == self.size:
                self._piece_full()
            if self.left == 0:
                self._complete()
            return
        try:
            self.parser.feed_data(self.head[:nbytes])
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"unparsable answer ({exc})"))

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc) -> None:
        self._end(exc)

    # httptools side
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.decode("latin-1").lower()
        if name == "content-length" and value.strip().isdigit():
            self.length = int(value)
        elif name == "transfer-encoding" and b"chunked" in value.lower():
            self.chunked = True
        self.headers.append((name, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.chunked and self.status not in (204, 304) and not 100 <= self.status < 200:
            self.raw = True
            self.left = self.length
        if not self.headers_done.done():
            self.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        """Body bytes unframed by httptools: the rest of the headers' read, or a chunked body."""
        view = memoryview(body)
        if self.left is not None:
            view = view[:self.left]
            self.left -= len(view)
        self.received += len(view)
        while view:
            n = min(len(view), self.size - self.fill)
            self.piece[self.fill:self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == self.size:
                self._piece_full()
        if self.left == 0:
            self._complete()

    def on_message_complete(self) -> None:
        self._complete()

    # the two sides meet here
    def _fresh(self) -> bytearray:
        return self.spare.pop() if self.spare else bytearray(self.size)

    def _piece_full(self) -> None:
        self.ready.append(self.piece)
        self.piece, self.fill = self._fresh(), 0
        self._wake()
        if len(self.ready) >= HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _complete(self) -> None:
        if not self.done:
            self.done = True
            self._wake()
        if self.transport is None or self.released:
            return
        if (self.on_idle is not None and (self.length is not None or self.chunked or not self.raw)
                and self.parser.should_keep_alive() and not self.transport.is_closing()):
            self.released = True  # framed, and the PACS keeps the connection open: reuse it
            self.transport.pause_reading()
            self.on_idle(self.transport)
        else:
            self.transport.close()

    def _end(self, exc: BaseException | None = None) -> None:
        if self.done or self.released:
            return
        if self.raw and self.left is None and exc is None:
            self._complete()  # a body that ends with the connection
        else:
            self._fail(Broken(f"the connection closed mid-answer ({type(exc).__name__ if exc else 'EOF'})"))

    def _fail(self, exc: BaseException) -> None:
        if self.released:
            return  # the connection serves another answer now, or was dropped while idle
        if self.error is None and not self.done:
            self.error = exc
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self) -> tuple[bytearray, int]:
        """The next piece for the caller and its length: a full one, else what there is."""
        if self.ready:
            if self.paused and len(self.ready) <= HIGH_WATER // 2 and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            return self.ready.popleft(), self.size
        piece, n = self.piece, self.fill
        self.piece, self.fill = self._fresh(), 0
        return piece, n

    def recycle(self, piece: bytearray) -> bool:
        """Keep ``piece`` for filling again, unless a view of it is still alive (an ASGI server
        that holds on to the bodies it was sent): it is then left to its holder, unchanged.
        Reusing pieces spares allocating and zeroing memory for every piece of a study. True
        when the piece is done with (kept or dropped), False while it is still in use."""
        if len(self.spare) >= HIGH_WATER:
            return True
        try:
            del piece[-1:]  # resizing fails while the piece has exports (live memoryviews)
        except BufferError:
            return False
        piece.append(0)
        self.spare.append(piece)
        return True

    async def wait(self, timeout: float) -> bool:
        """Wait for a full piece, the end or an error: True; False when ``timeout`` passed with
        some bytes come meanwhile (too few for a piece: the caller gets what there is)."""
        self.waiter = self.loop.create_future()
        before = self.received
        try:
            async with asyncio.timeout(timeout):
                await self.waiter
            return True
        except TimeoutError:
            if self.received == before:
                raise Broken("the PACS stopped sending") from None
            return False
        finally:
            self.waiter = None


class Answer:
    """An answer whose status and headers are read and whose body is not (yet)."""

    def __init__(self, protocol: _Answer, timeout: float, caller_timeout: float, movers=None):
        self._p, self.timeout, self.caller_timeout, self.movers = protocol, timeout, caller_timeout, movers
        self.status_code = protocol.status
        self.headers = {}
        for name, value in protocol.headers:
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value

    async def body(self) -> AsyncIterator[bytes]:
        """The body in pieces (the last one shorter). A piece is filled again only once no view
        of it is left (``recycle``): a caller may keep what it was given."""
        p = self._p
        lent: list[bytearray] = []  # pieces handed out, whose views the caller may still hold
        trickle = False  # a slow answer: hand on what there is rather than wait for a piece
        try:
            while True:
                if p.ready or ((p.done or p.error or trickle) and p.fill):
                    trickle = False
                    piece, n = p.take()
                    view = memoryview(piece) if n == p.size else memoryview(piece)[:n]
                    yield view
                    del view
                    # The caller lets go of a piece once it has the next one (``async for`` keeps
                    # the last value): recycle the earlier ones.
                    lent = [q for q in lent if not p.recycle(q)][-2:]
                    lent.append(piece)
                    continue
                if p.error is not None:
                    raise p.error
                if p.done:
                    return
                trickle = not await p.wait(self.timeout)
        finally:
            self.close()

    async def read(self, limit: int = ERROR_BYTES) -> bytes:
        """Up to ``limit`` bytes of the body (for error messages); the connection is closed."""
        out = bytearray()
        pieces = self.body()
        try:
            async for piece in pieces:
                out += piece
                if len(out) >= limit:
                    break
        except Broken:
            pass
        finally:
            await pieces.aclose()
        return bytes(out[:limit])

    async def read_all(self, limit: int, what: str) -> bytes:
        """The whole body (an answer parsed whole: QIDO-RS, metadata); 502 past ``limit`` bytes."""
        out = bytearray()
        pieces = self.body()
        try:
            async for piece in pieces:
                out += piece
                if len(out) > limit:
                    raise bad_gateway(f"The PACS's answer to {what} is larger than {limit} bytes")
        except Broken as exc:
            raise bad_gateway(f"The PACS's answer to {what} broke off ({exc})") from None
        finally:
            await pieces.aclose()
        return bytes(out)

    def close(self) -> None:
        if self._p.transport is not None and not self._p.released:
            self._p.transport.close()

    # for ``splice``: the body's bytes taken from the socket by the kernel instead
    def spliceable(self) -> bool:
        """Whether the rest of the body may be spliced: the fast path is on (``dicomweb_splice``:
        there are ``movers``), the body not chunked, not over, on plain TCP."""
        p = self._p
        t = p.transport
        return (self.movers is not None and p.raw and not p.done and p.error is None and t is not None and not t.is_closing()
                and t.get_extra_info("sslcontext") is None and t.get_extra_info("socket") is not None)

    def stop_reading(self) -> None:
        self._p.transport.pause_reading()

    def socket_fileno(self) -> int:
        return self._p.transport.get_extra_info("socket").fileno()

    def buffered(self) -> list[bytes]:
        """The body's bytes read so far and not yet handed out (the reading has stopped)."""
        p = self._p
        out = [bytes(piece) for piece in p.ready]
        if p.fill:
            out.append(bytes(memoryview(p.piece)[:p.fill]))
        p.ready.clear()
        p.fill = 0
        return out

    def left(self) -> int | None:
        """Bytes of the body still to come by its Content-Length; None: up to the end."""
        return self._p.left


class Relayed(StreamingResponse):
    """The answer passed on as it arrives, spliced in the kernel when it can be (``splice``),
    else as ASGI messages of raw bytes; bounded memory either way, closed at the end or when
    the caller goes away. Under uvicorn, its per-request cycle says when the caller is gone
    (checked per piece; the splice thread sees it as a failed write); under another server,
    Starlette's disconnect watch cancels the stream. That watch is a task group per response,
    which cost about a tenth of a small WADO-RS request's CPU."""

    def __init__(self, answer: Answer, headers: dict[str, str]):
        super().__init__(answer.body(), status_code=answer.status_code, headers=headers)
        self.answer = answer
        self._cycle = None
        self._splice = False

    async def __call__(self, scope, receive, send) -> None:
        from dicomweb import splice

        self._cycle = splice.uvicorn_cycle(receive)
        self._splice = splice.possible(scope, self._cycle)
        try:
            if self._cycle is None:
                await super().__call__(scope, receive, send)
            else:
                await self.stream_response(send)
        finally:
            self.answer.close()

    async def stream_response(self, send) -> None:
        try:
            await self._stream(send)
        except Broken as exc:
            log.warning("a relayed answer was cut short mid-stream: %s", exc)
            if self._cycle is None:
                raise  # the one way left to cut the body short
            # Closing the connection tells the caller the body is incomplete (it is chunked, or
            # shorter than its Content-Length); uvicorn then sees the caller gone, not an error.
            self._cycle.transport.close()
            await asyncio.sleep(0)

    async def _stream(self, send) -> None:
        from dicomweb import splice

        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._splice and splice.usable(self._cycle, self.answer):
            if await splice.relay(self._cycle, self.answer):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        stall = self.answer.caller_timeout
        async for chunk in self.body_iterator:
            COPIED.inc(len(chunk))
            try:
                async with asyncio.timeout(stall):  # uvicorn waits here while the caller takes nothing
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except TimeoutError:
                raise Broken(f"the caller took no bytes for {stall:g} s") from None
            if self._cycle is not None and self._cycle.disconnected:
                return  # uvicorn drops what is sent to a caller that has gone
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Relay:
    """Raw HTTP/1.1 requests to the PACS (``url``: its DICOMweb root): one connection per
    streamed answer, kept-alive connections for answers read whole."""

    def __init__(self, url: str, username: str, password: str, timeout: float, caller_timeout: float,
                 movers=None):
        parts = urlsplit(url)
        self.caller_timeout = caller_timeout  # a caller taking no bytes of a streamed answer this long is cut off
        self.movers = movers  # ``splice.Movers``: the kernel splice fast path for streamed answers; None: off
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.secure else 80)
        self.root = parts.path.rstrip("/")
        self.timeout = timeout
        default_port = (443 if self.secure else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self.auth = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()) if username else None
        self._ssl = ssl.create_default_context() if self.secure else None
        self._idle: collections.deque[tuple[float, asyncio.Transport]] = collections.deque()

    async def get(self, target: str, headers: dict[str, str], keep: bool = False) -> Answer:
        """``GET {root}{target}`` (``target``: path and query string, already encoded). ``keep``:
        on a kept-alive connection, in small pieces (for answers read whole)."""
        loop = asyncio.get_running_loop()
        lines = [f"GET {self.root}{target} HTTP/1.1", f"Host: {self.host_header}",
                 "Connection: keep-alive" if keep else "Connection: close",
                 "Accept-Encoding: identity", "User-Agent: telemed-dicomweb"]
        if self.auth:
            lines.append(f"Authorization: {self.auth}")
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                continue
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        what = f"GET {target.split('?')[0]}"
        while True:
            transport = self._reuse() if keep else None
            reused = transport is not None
            protocol = _Answer(loop, SMALL_PIECE_BYTES if keep else PIECE_BYTES, self._keep if keep else None)
            if reused:
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
                transport.resume_reading()
            else:
                transport = await self._connect(loop, protocol, what)
            try:
                transport.write(request)
                async with asyncio.timeout(self.timeout):
                    await protocol.headers_done
            except TimeoutError:
                transport.close()
                raise gateway_timeout(f"The PACS did not answer {what} in time") from None
            except (Broken, OSError, RuntimeError) as exc:
                transport.close()
                if reused and protocol.status == 0:
                    continue  # the PACS had closed the kept connection: again on a new one
                raise bad_gateway(f"The PACS's answer broke off ({exc})") from None
            return Answer(protocol, self.timeout, self.caller_timeout, self.movers)

    async def _connect(self, loop, protocol: _Answer, what: str) -> asyncio.Transport:
        try:
            async with asyncio.timeout(self.timeout):
                transport, _ = await loop.create_connection(
                    lambda: protocol, self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self.secure else None)
        except TimeoutError:
            raise gateway_timeout(f"The PACS did not accept a connection for {what} in time") from None
        except OSError as exc:
            raise bad_gateway(f"The PACS could not be reached ({type(exc).__name__})") from None
        return transport

    def _keep(self, transport: asyncio.Transport) -> None:
        if len(self._idle) >= IDLE_CONNECTIONS:
            transport.close()
        else:
            self._idle.append((time.monotonic(), transport))

    def _reuse(self) -> asyncio.Transport | None:
        now = time.monotonic()
        while self._idle:
            since, transport = self._idle.pop()
            if now - since <= IDLE_SECONDS and not transport.is_closing():
                return transport
            transport.close()
        return None

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()
        if self.movers is not None:
            self.movers.close()


def streamed(answer: Answer, rewriter: Rewriter) -> Response:
    """The answer passed on (``Relayed``); a ``Content-Location`` names the proxy."""
    return Relayed(answer, rewriter.headers({k: answer.headers[k] for k in PASSED if k in answer.headers}))
