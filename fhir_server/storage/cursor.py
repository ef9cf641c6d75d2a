"""Opaque keyset cursors, URL-safe: the sort key values of one entry, and which way to page from it.

A cursor is a position in the search's (or history's) total order, the key of an entry, and a
direction:

- ``[k1, k2, ...]``: the entries after the key (a ``next`` link: the key of a page's last entry);
- ``{"before": [...]}``: the entries before it, nearest first (a ``previous`` link: the key of a
  page's first entry). The adapter runs the same order with every key's direction flipped,
  ``after`` the key, and reverses the rows, so the page it gives is exactly the preceding one;
- ``{"from": [...]}`` / ``{"upto": [...]}``: the same, the key itself included. Only an empty
  page links with them, back to where its cursor pointed (its entries were deleted meanwhile).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from fhir_server.errors import invalid

_FORMS = {(True, False): "before", (False, True): "from", (True, True): "upto"}
_BY_NAME = {name: flags for flags, name in _FORMS.items()}


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position: ``key``, paging ``backward`` (towards the start) or forward, ``inclusive`` of it."""

    key: list
    backward: bool = False
    inclusive: bool = False


def encode_cursor(key: list, *, backward: bool = False, inclusive: bool = False) -> str:
    form = _FORMS.get((backward, inclusive))
    return _b64(key if form is None else {form: key})


def encode(at: Cursor) -> str:
    return encode_cursor(at.key, backward=at.backward, inclusive=at.inclusive)


def decode_cursor(text: str) -> list:
    """The key of a forward cursor (``[k1, k2, ...]``); any other form is a 400."""
    at = decode(text)
    if at.backward or at.inclusive:
        raise _bad()
    return at.key


def decode(text: str) -> Cursor:
    """Any cursor, validated: a list of scalar key values, bare or under one direction name."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise _bad() from None
    backward = inclusive = False
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in _BY_NAME:
            raise _bad()
        name, value = next(iter(value.items()))
        backward, inclusive = _BY_NAME[name]
    if not isinstance(value, list) or not all(_scalar(v) for v in value):
        raise _bad()
    return Cursor(value, backward, inclusive)


def page_cursors(at: Cursor | None, rows: list, key: Callable[[Any], list],
                 more: bool) -> tuple[str | None, str | None]:
    """The (next, previous) cursors of a page of ``rows`` (in page order; ``key`` gives a row's
    key) read at ``at`` (None: the start). ``more``: the read found a row beyond the page in the
    direction it ran (a backward read runs towards the start: there is a page before this one)."""
    if at is None:
        return (encode_cursor(key(rows[-1])) if more else None), None
    if not rows:
        # Nothing on this side of ``at`` any more: link to the other side, ``at`` included.
        back = encode(Cursor(at.key, not at.backward, not at.inclusive))
        return (back, None) if at.backward else (None, back)
    nxt = encode_cursor(key(rows[-1])) if more or at.backward else None
    prev = encode_cursor(key(rows[0]), backward=True) if more or not at.backward else None
    return nxt, prev


def _b64(value) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _bad():
    return invalid("The paging cursor is not valid; start the search again", "_cursor")


def _scalar(v) -> bool:
    """Cursor values are sort keys: strings, numbers, null, or a tagged blob ``{"b": hex}``."""
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return True
    return isinstance(v, dict) and set(v) == {"b"} and isinstance(v["b"], str) and len(v["b"]) % 2 == 0 and all(
        c in "0123456789abcdef" for c in v["b"])
