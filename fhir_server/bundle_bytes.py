"""Bundles assembled from stored resource bytes, without parsing or re-serialising resources."""

from __future__ import annotations

import orjson


def entry(fields: dict, resource: bytes | dict | None) -> bytes:
    """One Bundle.entry: ``fields`` (fullUrl, search, request, response) plus the resource bytes."""
    if resource is None or resource == b"":
        return orjson.dumps(fields)
    raw = resource if isinstance(resource, bytes) else orjson.dumps(resource)
    head = b'{"fullUrl":' + orjson.dumps(fields["fullUrl"]) + b"," if "fullUrl" in fields else b"{"
    others = {k: v for k, v in fields.items() if k != "fullUrl"}
    tail = b"," + orjson.dumps(others)[1:] if others else b"}"
    return head + b'"resource":' + raw + tail


def bundle(envelope: dict, entries: list[bytes]) -> bytes:
    """A Bundle: ``envelope`` (resourceType, type, total, link, ...) with the entries spliced in."""
    head = orjson.dumps(envelope)
    if not entries:
        return head
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
