"""The authority's state store, on both backends: expiry, one-time take, insert-once, purge."""

from __future__ import annotations

import asyncio
import time


async def test_expired_rows_are_invisible_and_purged(app):
    state = app.state.services.auth_state
    await state.put("code", "old", {"v": 1}, expires=time.time() - 1)
    await state.put("code", "new", {"v": 2}, expires=time.time() + 60)
    await state.put("client", "c", {"v": 3})
    assert await state.get("code", "old") is None and await state.take("code", "old") is None
    assert [d["v"] for d in await state.list("code")] == [2]
    await state.put("refresh", "stale", {"v": 4}, expires=time.time() - 1)
    assert await state.purge() >= 1
    assert await state.add("refresh", "stale", {"v": 5}) is True  # the key was free again
    assert await state.get("code", "new") == {"v": 2} and await state.get("client", "c") == {"v": 3}


async def test_a_one_time_value_is_taken_by_exactly_one_caller(app):
    state = app.state.services.auth_state
    await state.put("code", "once", {"v": 1}, expires=time.time() + 60)
    taken = await asyncio.gather(*(state.take("code", "once") for _ in range(10)))
    assert [t for t in taken if t is not None] == [{"v": 1}]


async def test_add_inserts_once_unless_the_old_row_expired(app):
    state = app.state.services.auth_state
    results = await asyncio.gather(*(state.add("assertion", "jti-1", {}, expires=time.time() + 60) for _ in range(5)))
    assert results.count(True) == 1
    await state.put("assertion", "jti-2", {}, expires=time.time() - 1)
    assert await state.add("assertion", "jti-2", {}, expires=time.time() + 60) is True
    assert await state.delete("assertion", "jti-2") is True and await state.delete("assertion", "jti-2") is False
