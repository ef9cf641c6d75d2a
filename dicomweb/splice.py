"""Zero-copy WADO-RS bodies: the PACS's socket spliced into the caller's, in the kernel.

After the access check, a large answer needs no more Python than framing: Linux ``splice(2)``
moves its bytes from the PACS's socket through a pipe into the caller's socket without copying
them into the process (the proxy's CPU per GiB is about half that of ``relay``'s copy path,
a tenth of the httpx path before; docs/dicomweb-results.md). This is the X-Accel-Redirect idea
without a front server. The bytes are moved by a thread of ``Movers``: one per answer, up
to ``dicomweb_splice_threads`` at once (past that an answer goes through ASGI messages). It
waits with ``poll`` and holds the GIL only between system calls, so the event loop is not woken
per chunk (that had cost 0.53 s of the proxy's CPU per GiB, against 0.27-0.46 s now; most of
what is left is the kernel's TCP work). The PACS's socket wakes the thread once ``WAKE_BYTES``
have come (``SO_RCVLOWAT``), so each chunk costs a few system calls per 256 KiB or more; a
slower PACS is not taken for a stalled one (after ``timeout`` whatever came is sent on). A
caller that takes nothing for ``caller_timeout`` (``dicomweb_caller_timeout``) is cut off, so
no thread waits on it for ever.

It needs the caller's socket, which ASGI does not give: it is taken from uvicorn's
``httptools`` connection (the ``receive`` callable is a method of uvicorn's per-request cycle,
which holds the transport). The fast path runs only when all of this holds, else the answer
goes through ``relay``'s ordinary ASGI messages, byte for byte the same:
- Linux ``os.splice``; the ASGI server is uvicorn with its httptools protocol, the response is
  chunked (uvicorn chose chunked framing: there is no Content-Length), plain TCP (no TLS on
  either side: encrypted bytes cannot be spliced), and uvicorn has nothing left unwritten;
- the PACS's answer is framed by Content-Length or by the end of its connection (a chunked
  answer is unframed by httptools in ``relay``).

The body is written as HTTP/1.1 chunks (``%x\\r\\n`` + spliced bytes + ``\\r\\n``); the last
chunk (``0\\r\\n\\r\\n``) is uvicorn's, sent by the closing ASGI message, so uvicorn's state for
the connection stays right. An answer that breaks off raises ``Broken``, and ``relay.Relayed``
closes the caller's connection: it sees a truncated chunked body, never a complete-looking
one. A caller that goes away ends the relay quietly (a write to it fails); a cancelled relay
(the server stopping) stops its thread, which closes its descriptors itself before the PACS's
connection is closed. The setting ``dicomweb_splice`` (environment
``TELEMED_DICOMWEB_SPLICE=0``) turns the fast path off.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dicomweb.relay import COPIED, RELAYED, Answer, Broken

PIPE_BYTES = 1 << 20  # the pipe's capacity (F_SETPIPE_SZ), and so the largest chunk
WAKE_BYTES = 256 << 10  # the PACS's socket wakes the proxy when this much has arrived (or at its end)
F_SETPIPE_SZ = 1031
SPLICE = getattr(os, "splice", None)
FILL = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
DRAIN = FILL | getattr(os, "SPLICE_F_MORE", 0)
SPLICED = RELAYED.labels("splice")
GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)
STOP_CHECK = 0.5  # seconds: how soon a moving thread notices ``stop``


def uvicorn_cycle(receive):
    """uvicorn's (httptools) per-request cycle behind ``receive``, which holds the caller's
    transport; None under another ASGI server (or a middleware that wraps ``receive``)."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not type(cycle).__module__.startswith("uvicorn.protocols.http.httptools_impl"):
        return None
    return cycle if getattr(cycle, "transport", None) is not None else None


def possible(scope, cycle) -> bool:
    """Whether the fast path may write to the caller's socket (checked before the response starts)."""
    if SPLICE is None or cycle is None:
        return False
    if scope.get("http_version") != "1.1" or scope.get("method") != "GET":
        return False
    transport = cycle.transport
    return transport.get_extra_info("sslcontext") is None and transport.get_extra_info("socket") is not None


class Movers:
    """The threads that move spliced answers, ``threads`` at most (``dicomweb_splice_threads``);
    an answer that finds none free goes through ASGI messages."""

    def __init__(self, threads: int):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="dicomweb-splice")
        self.free = threading.BoundedSemaphore(threads)
        self.moving: set[_Moving] = set()

    def take(self) -> bool:
        return self.free.acquire(blocking=False)

    def give_back(self) -> None:
        self.free.release()

    def close(self) -> None:
        """At shutdown: every move stops within ``STOP_CHECK`` (the interpreter waits for its threads)."""
        for moving in self.moving:
            moving.stop()
        self.pool.shutdown(wait=False)


def usable(cycle, answer: Answer) -> bool:
    """Whether the started response may continue on the fast path (checked after the start);
    True takes one of the answer's ``movers``, which ``relay`` gives back."""
    transport = cycle.transport
    return (cycle.chunked_encoding is True and not cycle.disconnected and not transport.is_closing()
            and transport.get_write_buffer_size() == 0 and answer.spliceable() and answer.movers.take())


class _Moving:
    """One answer's rest, moved by a thread of ``Movers``: the answer's socket is spliced into a
    pipe, the pipe into the caller's socket, with the chunk framing written between. The thread
    waits with ``poll`` and owns its descriptors (dups of the two sockets, and the pipe) until it
    ends, so neither can be closed under it; ``stop`` ends it within ``STOP_CHECK`` seconds."""

    def __init__(self, caller: socket.socket, upstream: socket.socket, head: list[bytes], left: int | None,
                 timeout: float, caller_timeout: float):
        self.caller, self.upstream, self.head, self.left = caller, upstream, head, left
        self.timeout, self.caller_timeout = timeout, caller_timeout
        self.stopped = False
        self._readable, self._writable = select.poll(), select.poll()
        self._readable.register(upstream.fileno(), select.POLLIN)
        self._writable.register(caller.fileno(), select.POLLOUT)

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> bool:
        """True when the whole rest was sent; False when the caller went away. Raises ``Broken``."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            try:
                fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # the default capacity (64 KiB) works too, in smaller chunks
            first = True
            for piece in self.head:  # what was read before the fast path took over
                if not self._send((b"" if first else b"\r\n") + b"%x\r\n" % len(piece) + piece):
                    return False
                COPIED.inc(len(piece))
                first = False
            left, wake = self.left, 0
            while left is None or left > 0:
                # Fewer, larger chunks: the socket reports readable only once WAKE_BYTES are there
                # (or the answer's end: the request said Connection: close, so the PACS closes).
                want = WAKE_BYTES if left is None else max(1, min(left, WAKE_BYTES))
                if want != wake:
                    self.upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                    wake = want
                n = self._fill(write_end, PIPE_BYTES if left is None else min(left, PIPE_BYTES))
                if n == 0:
                    if left:
                        raise Broken("the connection closed mid-answer (EOF)")
                    break
                if left is not None:
                    left -= n
                if not self._send((b"" if first else b"\r\n") + b"%x\r\n" % n):
                    return False
                first = False
                if not self._drain(read_end, n):
                    return False
                SPLICED.inc(n)
            return first or self._send(b"\r\n")
        finally:
            os.close(read_end)
            os.close(write_end)
            self.upstream.close()  # the dups only: uvicorn's socket stays open, the PACS's is closed later
            self.caller.close()

    def _wait(self, poll, timeout: float) -> bool:
        """Wait until ``poll`` reports its descriptor ready: False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.stopped:
            rest = deadline - time.monotonic()
            if poll.poll(max(0, min(rest, STOP_CHECK)) * 1000):
                return True
            if rest <= STOP_CHECK:
                return False
        raise Broken("the relay was stopped")

    def _fill(self, write_end: int, size: int) -> int:
        """Move up to ``size`` bytes from the PACS into the (empty) pipe: as many as are there
        without waiting, or else the next ones to come (0 at the end of its answer)."""
        source = self.upstream.fileno()
        stalled = False
        while True:
            try:
                return SPLICE(source, write_end, size, None, None, FILL)
            except BlockingIOError:
                if stalled:
                    raise Broken("the PACS stopped sending") from None
                # After the timeout one more try takes bytes too few to wake us (WAKE_BYTES):
                # only none at all is a stall.
                stalled = not self._wait(self._readable, self.timeout)
            except OSError as exc:
                raise Broken(f"the connection broke ({errno.errorcode.get(exc.errno, exc.errno)})") from None

    def _drain(self, read_end: int, n: int) -> bool:
        """Move ``n`` bytes from the pipe to the caller; False when the caller is gone."""
        caller = self.caller.fileno()
        return self._to_caller(lambda left: SPLICE(read_end, caller, left, None, None, DRAIN), n)

    def _send(self, data: bytes) -> bool:
        """Write framing (and the first buffered bytes) to the caller; False when it is gone."""
        view = memoryview(data)
        return self._to_caller(lambda left: self.caller.send(view[len(view) - left:], socket.MSG_MORE), len(view))

    def _to_caller(self, write, n: int) -> bool:
        """Call ``write(left)`` (one non-blocking write of at most ``left`` bytes to the caller,
        returning how many it wrote) until ``n`` bytes are written; False when the caller is gone."""
        while n:
            try:
                n -= write(n)
            except BlockingIOError:
                self._caller_ready()
            except OSError as exc:
                if exc.errno in GONE:
                    return False
                raise
        return True

    def _caller_ready(self) -> None:
        if not self._wait(self._writable, self.caller_timeout):
            raise Broken(f"the caller took no bytes for {self.caller_timeout:g} s")


async def relay(cycle, answer: Answer) -> bool:
    """Send the rest of ``answer``'s body to the caller spliced, in a thread of its ``movers``;
    True when it was all sent, False when the caller went away. Raises ``Broken`` when the PACS's
    answer breaks off or the caller stalls. ``usable`` has taken the thread, which this gives back."""
    movers = answer.movers
    dups: list[socket.socket] = []
    try:
        dups.append(socket.socket(fileno=os.dup(cycle.transport.get_extra_info("socket").fileno())))
        dups.append(socket.socket(fileno=os.dup(answer.socket_fileno())))
        answer.stop_reading()
        moving = _Moving(*dups, answer.buffered(), answer.left(), answer.timeout, answer.caller_timeout)
        future = asyncio.get_running_loop().run_in_executor(movers.pool, moving.run)
    except BaseException:  # no thread took the descriptors
        for dup in dups:
            dup.close()
        movers.give_back()
        answer.close()
        raise
    movers.moving.add(moving)

    def done(_):  # in the event loop, once the thread has let go of every descriptor
        movers.moving.discard(moving)
        movers.give_back()
        answer.close()

    future.add_done_callback(done)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        moving.stop()  # the caller went away, or the server stops: the thread ends soon
        raise
