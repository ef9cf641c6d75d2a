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
    if not isinstance(key, list) or not all(_scalar(v) for v in key):
        raise invalid("The paging cursor is not valid; start the search again", "_cursor")
    return key


def _scalar(v) -> bool:
    """Cursor values are sort keys: strings, numbers, null, or a tagged blob ``{"b": hex}``."""
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return True
    return isinstance(v, dict) and set(v) == {"b"} and isinstance(v["b"], str) and all(
        c in "0123456789abcdef" for c in v["b"])
