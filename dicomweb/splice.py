"""Zero-copy WADO-RS bodies: the PACS's socket spliced into the caller's, in the kernel.

After the access check, a large answer needs no more Python than framing: Linux ``splice(2)``
moves its bytes from the PACS's socket through a pipe into the caller's socket without copying
them into the process (the proxy's CPU per GiB is about half that of ``relay``'s copy path,
a tenth of the httpx path before; docs/dicomweb-results.md). This is the X-Accel-Redirect idea
without a front server. The PACS's socket wakes the proxy once ``WAKE_BYTES`` have come
(``SO_RCVLOWAT``), so each chunk costs a few system calls per 256 KiB or more; a slower PACS is
not taken for a stalled one (after ``timeout`` whatever came is sent on).

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
one. A caller that goes away ends the relay quietly. The setting ``dicomweb_splice`` (environment
``TELEMED_DICOMWEB_SPLICE=0``) turns the fast path off.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket

from dicomweb.relay import RELAYED, Answer, Broken

PIPE_BYTES = 1 << 20  # the pipe's capacity (F_SETPIPE_SZ), and so the largest chunk
WAKE_BYTES = 256 << 10  # the PACS's socket wakes the proxy when this much has arrived (or at its end)
F_SETPIPE_SZ = 1031
SPLICE = getattr(os, "splice", None)
SPLICED = RELAYED.labels("splice")
GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)


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


def usable(cycle, answer: Answer) -> bool:
    """Whether the started response may continue on the fast path (checked after the start)."""
    transport = cycle.transport
    return (cycle.chunked_encoding is True and not cycle.disconnected and not transport.is_closing()
            and transport.get_write_buffer_size() == 0 and answer.spliceable())


class _Fd:
    """A file descriptor of ours (a dup, or a pipe end), waited on through the event loop."""

    def __init__(self, loop, fd: int):
        self.loop, self.fd = loop, fd

    async def readable(self, timeout: float | None) -> None:
        await self._wait(self.loop.add_reader, self.loop.remove_reader, timeout)

    async def writable(self) -> None:
        await self._wait(self.loop.add_writer, self.loop.remove_writer, None)

    async def _wait(self, add, remove, timeout) -> None:
        future = self.loop.create_future()
        add(self.fd, lambda: future.done() or future.set_result(None))
        try:
            if timeout is None:
                await future
            else:
                async with asyncio.timeout(timeout):
                    await future
        finally:
            remove(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def relay(cycle, answer: Answer, timeout: float) -> bool:
    """Send the rest of ``answer``'s body to the caller spliced; True when it was all sent, False
    when the caller went away. Raises ``Broken`` when the PACS's answer breaks off."""
    loop = asyncio.get_running_loop()
    caller = socket.socket(fileno=os.dup(cycle.transport.get_extra_info("socket").fileno()))
    out = _Fd(loop, caller.fileno())
    upstream = socket.socket(fileno=os.dup(answer.socket_fileno()))
    source = _Fd(loop, upstream.fileno())
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    pipe_in, pipe_out = _Fd(loop, write_end), _Fd(loop, read_end)
    try:
        try:
            fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default capacity (64 KiB) works too, in smaller chunks
        answer.stop_reading()
        wake = 0
        first = True
        for piece in answer.buffered():  # what was read before the fast path took over
            if not await _send(out, caller, (b"" if first else b"\r\n") + b"%x\r\n" % len(piece) + piece):
                return False
            RELAYED.labels("copy").inc(len(piece))
            first = False
        left = answer.left()
        while left is None or left > 0:
            # Fewer, larger chunks: the socket reports readable only once WAKE_BYTES are there
            # (or the answer's end: the request said Connection: close, so the PACS closes).
            want = WAKE_BYTES if left is None else max(1, min(left, WAKE_BYTES))
            if want != wake:
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                wake = want
            n = await _fill(source, write_end, PIPE_BYTES if left is None else min(left, PIPE_BYTES), timeout)
            if n == 0:
                if left:
                    raise Broken("the connection closed mid-answer (EOF)")
                break
            if left is not None:
                left -= n
            if not await _send(out, caller, (b"" if first else b"\r\n") + b"%x\r\n" % n):
                return False
            first = False
            if not await _drain(out, read_end, n):
                return False
            SPLICED.inc(n)
        if not first and not await _send(out, caller, b"\r\n"):
            return False
        return True
    finally:
        for fd in (pipe_in, pipe_out):
            fd.close()
        upstream.close()  # the dups only: uvicorn's socket stays open, the PACS's is closed next
        caller.close()
        answer.close()


async def _fill(source: _Fd, write_end: int, size: int, timeout: float) -> int:
    """Move up to ``size`` bytes from the PACS into the pipe, as many as are there without
    waiting, or else the next ones to come (0 at the end of its answer)."""
    n = 0
    while n < size:
        try:
            moved = SPLICE(source.fd, write_end, size - n, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            if n:
                return n  # the pipe is full, or the socket empty: send what there is
            try:
                await source.readable(timeout)
            except TimeoutError:
                # Bytes may have come, too few to wake us (WAKE_BYTES): only none at all is a stall.
                try:
                    return SPLICE(source.fd, write_end, size, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    raise Broken("the PACS stopped sending") from None
                except OSError as exc:
                    raise Broken(f"the connection broke ({errno.errorcode.get(exc.errno, exc.errno)})") from None
            continue
        except OSError as exc:
            raise Broken(f"the connection broke ({errno.errorcode.get(exc.errno, exc.errno)})") from None
        if moved == 0:
            return n
        n += moved
    return n


async def _drain(out: _Fd, read_end: int, n: int) -> bool:
    """Move ``n`` bytes from the pipe to the caller; False when the caller is gone."""
    while n:
        try:
            n -= SPLICE(read_end, out.fd, n, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK | os.SPLICE_F_MORE)
        except BlockingIOError:
            await out.writable()
        except OSError as exc:
            if exc.errno in GONE:
                return False
            raise
    return True


async def _send(out: _Fd, caller: socket.socket, data: bytes) -> bool:
    """Write framing (and the first buffered bytes) to the caller; False when it is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[caller.send(view, socket.MSG_MORE):]
        except BlockingIOError:
            await out.writable()
        except OSError as exc:
            if exc.errno in GONE:
                return False
            raise
    return True
