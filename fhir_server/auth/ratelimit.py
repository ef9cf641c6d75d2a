"""A sliding-window rate limit: at most ``limit`` hits per ``window`` seconds per key.

Used on the token endpoint per (client_id, client IP) and on login attempts. The window lives in
the server process: with several processes behind a load balancer each allows ``limit``, so the
effective limit is ``limit`` times the number of processes.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Hashable

MAX_KEYS = 100_000  # past this many keys, idle ones are dropped


class SlidingWindow:
    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def hit(self, key: Hashable) -> float | None:
        """Count one hit for ``key``; None when allowed, else the seconds until the next is."""
        now = self.clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._forget_idle(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 0.001)
        hits.append(now)
        return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]
