"""Running one search case against the server and the oracle (shared by the correctness tests).

A case is ``"Type?name=value&..."`` as a client would write it: values unencoded, ``{P3}`` for
the id of the resource labelled P3, ``{lu:P3}`` for its meta.lastUpdated, ``{lus:P3}`` for that
instant cut to the second, ``{lutz:P3}`` for it written at +05:30. ``case(...)`` wraps one in
``pytest.param`` with what is known to fail: an engine bug is a strict xfail (static when it
shows on both adapters, applied at run time when on one); a SecantusDB-only failure is skipped
on mongo with its reason.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

from dataclasses import dataclass

import pytest

from tests.fhir_server.search.correctness_world import STORES, World


@dataclass(frozen=True)
class Known:
    """A known failure of one case on some adapters: an engine bug (strict xfail) or a SecantusDB gap (skip)."""

    xfail: str | None = None
    on: tuple[str, ...] = STORES
    mongo_skip: str | None = None


def case(query: str, xfail: str | None = None, on: tuple[str, ...] = STORES, mongo_skip: str | None = None):
    """``xfail``: an engine bug, on every adapter in ``on`` (a static strict xfail when on all of them, else
    applied when the test runs on one of ``on``); ``mongo_skip``: the engine is right but SecantusDB is not."""
    everywhere = xfail is not None and set(on) == set(STORES)
    # CORRECTNESS_SHOW_BUGS=1 runs the known engine bugs as plain tests, to see their failures
    if os.environ.get("CORRECTNESS_SHOW_BUGS"):
        xfail = None
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail and everywhere else []
    return pytest.param(query, Known(None if everywhere else xfail, on, mongo_skip), marks=marks, id=query)


def expect_known(request, world: World, known: Known) -> None:
    """Applies ``known`` to this run of a case on ``world``'s adapter."""
    if known.mongo_skip and world.store == "mongo":
        pytest.skip(f"SecantusDB: {known.mongo_skip}")
    if known.xfail and world.store in known.on:
        request.applymarker(pytest.mark.xfail(strict=True, reason=known.xfail))


def parse(query: str) -> tuple[str, list[tuple[str, str]]]:
    type, _, rest = query.partition("?")
    items = []
    for part in rest.split("&") if rest else []:
        name, _, value = part.partition("=")
        items.append((name, value))
    return type, items


def fill(world: World, text: str) -> str:
    def lu(m: re.Match) -> str:
        instant = next(r for r in world.resources if r["id"] == world.ids[m.group(2)])["meta"]["lastUpdated"]
        if m.group(1) == "lus":
            instant = re.sub(r"\.\d+", "", instant)
        if m.group(1) == "lutz":  # the same instant written at +05:30
            when = datetime.fromisoformat(instant.replace("Z", "+00:00"))
            instant = when.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="microseconds")
        return instant

    text = re.sub(r"\{(lus|lu|lutz):([A-Z]\d+)\}", lu, text)
    return world.fill(text)


def labelled(world: World, ids) -> list[str]:
    back = {v: k for k, v in world.ids.items()}
    return sorted(back.get(i, i) for i in ids)


async def check_matches(world: World, query: str) -> list[str]:
    """The server's matches for ``query`` are what the oracle admits; returns them in order."""
    type, items = parse(fill(world, query))
    expected = world.oracle.search(type, items)
    entries = await world.search(type, [*items, ("_count", "1000")])
    got = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    assert len(got) == len(set(got)), f"duplicates in {labelled(world, got)}"
    found = set(got)
    missing = expected.must - found
    extra = found - expected.must - expected.may
    assert not missing and not extra, (
        f"{query}\n  missing (expected, not returned): {labelled(world, missing)}"
        f"\n  unexpected (returned, not expected): {labelled(world, extra)}"
        f"\n  expected: {labelled(world, expected.must)} (+ may: {labelled(world, expected.may)})")
    return got
