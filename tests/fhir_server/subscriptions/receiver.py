"""A real rest-hook receiver for the tests: a small HTTP/1.1 server on a loopback port.

It records every POST (headers and parsed JSON body) in order, answers ``status`` (200 by
default), and can be taken down (its socket closed: connections are refused) and brought up
again on the same port.
"""

from __future__ import annotations

import asyncio

import orjson

from tests.fhir_server.server_process import free_port


class Receiver:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[tuple[dict, dict]] = []  # (headers, body)
        self.raw: list[bytes] = []
        self.status = 200
        self._server: asyncio.base_events.Server | None = None
        self._arrived = asyncio.Event()
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> "Receiver":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        return self

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):  # kept-alive connections go too: the receiver is really gone
            writer.close()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self.status
                if 200 <= status < 300:
                    self.raw.append(body)
                    self.received.append((headers, orjson.loads(body)))
                    self._arrived.set()
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    def notifications(self, kind: str | None = None) -> list[dict]:
        """The received Bundles' status Parameters as {name: value}, optionally of one type."""
        out = []
        for _, bundle in self.received:
            params = status_of(bundle)
            if kind is None or params["type"] == kind:
                out.append(params | {"bundle": bundle})
        return out

    def event_numbers(self) -> list[int]:
        return [n for p in self.notifications("event-notification") for n in p["events"]]

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out; received: {[status_of(b)['type'] for _, b in self.received]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass


def status_of(bundle: dict) -> dict:
    """The SubscriptionStatus Parameters of a notification Bundle, flattened: name -> value, and
    ``events``: the event numbers, ``focus``: their focus references (None when left out)."""
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters"
    out: dict = {"events": [], "focus": []}
    for p in params["parameter"]:
        if p["name"] == "notification-event":
            parts = {q["name"]: q for q in p["part"]}
            out["events"].append(int(parts["event-number"]["valueString"]))
            out["focus"].append(parts["focus"]["valueReference"]["reference"] if "focus" in parts else None)
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out
