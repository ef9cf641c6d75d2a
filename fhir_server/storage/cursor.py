"""Opaque keyset cursors: the sort key values of the last entry of a page, URL-safe."""

from __future__ import annotations

import base64

import orjson

from fhir_server.errors import invalid


def encode_cursor(key: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(text: str) -> list:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise invalid("The paging cursor is not valid; start the search again", "_cursor") from None
    if not isinstance(key, list):
        raise invalid("The paging cursor is not valid; start the search again", "_cursor")
    return key
