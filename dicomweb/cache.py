"""Study metadata kept with an ETag, so callers revalidate with ``If-None-Match`` (304).

The PACS sends no validators (Orthanc 1.10: no ETag, no Cache-Control), so the proxy keeps the
rewritten metadata it served, bounded by total bytes (least recently used out first) and by
age (``dicomweb_cache_seconds``: instances stored in the PACS by another route than this proxy
are seen at most that late). A STOW-RS through the proxy forgets the studies it touched at once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    study: str
    body: bytes
    etag: str
    stored: float


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


class MetadataCache:
    def __init__(self, max_bytes: int, max_age: float):
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.stored > self.max_age:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, study: str, body: bytes) -> Entry:
        entry = Entry(study, body, etag_of(body), time.monotonic())
        if len(body) > self.max_bytes:
            return entry  # served, not kept
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._size += len(body)
        while self._size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return entry

    def forget_study(self, study: str) -> None:
        for key in [k for k, e in self._entries.items() if e.study == study]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._size -= len(entry.body)
