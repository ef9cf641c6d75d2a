"""Paging backward: ``prev_cursor`` gives exactly the page before, on both adapters, for every
kind of sort (stored and computed keys, missing values, ties), and stays stable under inserts."""

from __future__ import annotations

import base64
import re

import orjson
import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.storage.cursor import Cursor, decode, encode, encode_cursor
from tests.fhir_server.storage.test_contract import Writer, instant, observation, patient, q

FAMILIES = ["Smith", None, "Jones", "Smith", "Adams", None, "Zeta", "Jones", "Brown"]
BIRTHDATES = ["1970-01-01", "1980-05", None, "1970-01-01", "1990", None, "1965-12-31", "1980-05-17"]
GENDERS = ["female", "male", None, "female", "other"]
DATES = ["2024-05-03T10:00:00Z", None, "2024-05-03", "2024-05-03T10:00:00Z", "2023", None, "2024-06-01T08:30:00Z"]


def person(id: str, i: int) -> dict:
    fields: dict = {}
    if FAMILIES[i % len(FAMILIES)]:
        fields["name"] = [{"family": FAMILIES[i % len(FAMILIES)]}]
    if BIRTHDATES[i % len(BIRTHDATES)]:
        fields["birthDate"] = BIRTHDATES[i % len(BIRTHDATES)]
    if GENDERS[i % len(GENDERS)]:
        fields["gender"] = GENDERS[i % len(GENDERS)]
    return patient(id, **fields)


def obs(id: str, i: int) -> dict:
    date = DATES[i % len(DATES)]
    return observation(id, subject={"reference": "Patient/p"}, **({"effectiveDateTime": date} if date else {}))


def resource(type: str, id: str, i: int) -> dict:
    return person(id, i) if type == "Patient" else obs(id, i)


async def fill(store, type: str, n: int) -> Writer:
    """``n`` resources, written two or three per commit (ties in lastUpdated)."""
    w = Writer(store)
    start, size = 0, 2
    while start < n:
        await w.put(*[resource(type, f"r{i:02d}", i) for i in range(start, min(n, start + size))])
        start, size = start + size, 5 - size
    return w


SEARCHES = [
    ("Patient", [("_sort", "_id")]),
    ("Patient", [("_sort", "-_id")]),
    ("Patient", [("_sort", "-_lastUpdated")]),
    ("Patient", [("_sort", "family,-birthdate")]),
    ("Patient", [("_sort", "-family,birthdate")]),
    ("Patient", [("_sort", "gender,-_lastUpdated")]),  # a token: a computed key on MongoDB
    ("Patient", [("_sort", "-gender")]),
    ("Patient", [("_lastUpdated", "ge2024-03-01T12:00:03Z")]),  # no sort, a _lastUpdated range
    ("Patient", [("birthdate", "ge1970"), ("_sort", "birthdate")]),
    ("Observation", [("_sort", "-date")]),
    ("Observation", [("subject", "Patient/p"), ("_sort", "date")]),
    ("Observation", [("subject", "Patient/p")]),  # id order read from the reference index (SQLite)
    ("Observation", [("subject", "Patient/p"), ("status", "final")]),
]

# Searches in id order: by ``_sort=_id``, and by default with a reference (SQLite reads the ids in
# order from the reference index then).
ID_ORDER = [("Patient", ("_sort", "_id")), ("Observation", ("subject", "Patient/p"))]


def label(search) -> str:
    return search[0] + "?" + "&".join(f"{k}={v}" for k, v in search[1])


async def forward(store, query, count: int) -> list:
    pages = [await store.search(query, count=count, cursor=None, total=False)]
    while pages[-1].next_cursor:
        assert len(pages) < 100, "paging does not end"
        pages.append(await store.search(query, count=count, cursor=pages[-1].next_cursor, total=False))
    return pages


def ids(page) -> list[str]:
    return [e.id for e in page.entries]


@pytest.mark.parametrize("search", SEARCHES, ids=label)
@pytest.mark.parametrize("count", [1, 4, 5])
async def test_previous_cursors_walk_back_through_the_same_pages(store, search, count):
    type, items = search
    await fill(store, type, 17)
    query = q(type, *items)
    everything = ids(await store.search(query, count=1000, cursor=None, total=False))
    pages = await forward(store, query, count)

    assert [i for p in pages for i in ids(p)] == everything
    assert len(pages) > 2
    assert pages[0].prev_cursor is None
    assert all(p.prev_cursor is not None for p in pages[1:])
    # back from the last page to the first, each step exactly the page read before it
    page = pages[-1]
    for i in range(len(pages) - 2, -1, -1):
        back = await store.search(query, count=count, cursor=page.prev_cursor, total=False)
        assert ids(back) == ids(pages[i]), f"page {i}"
        assert (back.prev_cursor is None) == (i == 0)
        again = await store.search(query, count=count, cursor=back.next_cursor, total=False)
        assert ids(again) == ids(pages[i + 1]), f"next of page {i} read backward"
        page = back


@pytest.mark.parametrize("search", SEARCHES, ids=label)
async def test_paging_both_ways_while_resources_are_inserted_skips_and_repeats_none(store, search):
    type, items = search
    w = await fill(store, type, 15)
    query = q(type, *items)
    before = ids(await store.search(query, count=1000, cursor=None, total=False))
    new = iter(range(1000))

    async def insert():  # ids and keys that land anywhere in the order: before, between, after
        for _ in range(2):
            n = next(new)
            await w.put(resource(type, f"r{(n * 7) % 15:02d}x{n}", n * 5 + 1))

    pages = [await store.search(query, count=4, cursor=None, total=False)]
    while pages[-1].next_cursor:
        assert len(pages) < 100, "paging does not end"
        await insert()
        pages.append(await store.search(query, count=4, cursor=pages[-1].next_cursor, total=False))
    seen = [i for p in pages for i in ids(p)]
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in before] == before  # every one, once, in order

    back = [pages[-1]]
    while back[-1].prev_cursor:
        assert len(back) < 100, "paging does not end"
        await insert()
        back.append(await store.search(query, count=4, cursor=back[-1].prev_cursor, total=False))
    seen = [i for p in reversed(back) for i in ids(p)]
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in before] == before


@pytest.mark.parametrize("type,item", ID_ORDER)
async def test_a_page_emptied_by_deletes_links_back_to_where_its_cursor_pointed(store, type, item):
    w = await fill(store, type, 9)
    query = q(type, item)
    pages = await forward(store, query, 3)
    assert [ids(p) for p in pages] == [["r00", "r01", "r02"], ["r03", "r04", "r05"], ["r06", "r07", "r08"]]
    for id in ids(pages[2]):
        await w.delete(type, id)

    empty = await store.search(query, count=3, cursor=pages[1].next_cursor, total=False)
    assert (ids(empty), empty.next_cursor) == ([], None)
    assert decode(empty.prev_cursor) == Cursor(["r05"], backward=True, inclusive=True)
    back = await store.search(query, count=3, cursor=empty.prev_cursor, total=False)
    assert ids(back) == ["r03", "r04", "r05"]  # r05, the cursor's own entry, included
    assert decode(back.next_cursor).key == ["r05"]

    for id in ids(pages[0]):
        await w.delete(type, id)
    empty = await store.search(query, count=3, cursor=pages[1].prev_cursor, total=False)
    assert (ids(empty), empty.prev_cursor) == ([], None)
    assert decode(empty.next_cursor) == Cursor(["r03"], inclusive=True)
    again = await store.search(query, count=3, cursor=empty.next_cursor, total=False)
    assert ids(again) == ["r03", "r04", "r05"]
    assert again.prev_cursor is not None and again.next_cursor is None
    assert ids(await store.search(query, count=3, cursor=again.prev_cursor, total=False)) == []


@pytest.mark.parametrize("type,item", ID_ORDER)
async def test_a_backward_page_that_reaches_the_start_is_the_first_page(store, type, item):
    w = await fill(store, type, 8)
    query = q(type, item)
    pages = await forward(store, query, 3)
    await w.delete(type, "r01")

    back = await store.search(query, count=3, cursor=pages[1].prev_cursor, total=False)
    assert ids(back) == ["r00", "r02"]
    assert back.prev_cursor is None and back.next_cursor is not None


async def test_count_zero_has_no_cursors(store):
    await fill(store, "Patient", 4)
    query = q("Patient", ("_sort", "_id"))
    first = await store.search(query, count=2, cursor=None, total=False)
    page = await store.search(query, count=0, cursor=first.next_cursor, total=True)
    assert (page.entries, page.total, page.next_cursor, page.prev_cursor) == ([], 4, None, None)


def raw(value) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize("value", [
    {"before": [{"a": 1}]}, {"sideways": ["r01"]}, {"before": ["r01"], "from": ["r01"]}, {"before": "r01"},
    {"upto": [True]}, {"before": [{"b": "abc"}]}, {"before": [{"b": "zz"}]}, {}, "r01", None,
    {"before": []}, {"from": ["a", "b", "c"]},
])  # fmt: skip
async def test_tampered_cursors_of_every_form_are_refused(store, value):
    await fill(store, "Patient", 2)
    with pytest.raises(OperationOutcomeError) as err:
        await store.search(q("Patient", ("_sort", "_id")), count=1, cursor=raw(value), total=False)
    assert err.value.status == 400


@pytest.mark.parametrize("value", [{"before": [1, 2]}, {"upto": ["x"]}, {"from": []}])
async def test_tampered_history_cursors_are_refused(store, value):
    await fill(store, "Patient", 2)
    with pytest.raises(OperationOutcomeError) as err:
        await store.history(None, None, since=None, at=None, count=1, cursor=raw(value))
    assert err.value.status == 400


def test_cursor_forms_round_trip():
    for at in (Cursor(["a", 1, None, {"b": "00ff"}]), Cursor([2.5], backward=True), Cursor(["x"], inclusive=True),
               Cursor(["y"], backward=True, inclusive=True)):
        assert decode(encode(at)) == at
    assert encode(Cursor(["a"])) == encode_cursor(["a"]) == raw(["a"])  # forward cursors: unchanged form


@pytest.mark.parametrize("kind", [None, "Patient", "Patient/r03"])
# _since between two commits: SecantusDB's scan of (t, [i,] lu, ...) for lu >= x misses lu == x.
@pytest.mark.parametrize("window", [{}, {"since": instant(2.5)}, {"at": instant(9)}],
                         ids=["all", "since", "at"])
async def test_history_pages_walk_back_the_same_way(store, kind, window):
    w = await fill(store, "Patient", 7)
    for round in range(3):  # more versions, some deleted
        await w.put(person("r03", round + 1), person(f"r0{round}", round + 2))
        await w.put(observation(f"o{round}"))
    await w.delete("Patient", "r05")
    type, _, id = (kind or "").partition("/")
    args = dict(since=window.get("since"), at=window.get("at"))

    def versions(page):
        return [(e.type, e.id, e.version) for e in page.entries]

    everything = versions(await store.history(type or None, id or None, count=1000, cursor=None, **args))
    pages = [await store.history(type or None, id or None, count=2, cursor=None, **args)]
    while pages[-1].next_cursor:
        pages.append(await store.history(type or None, id or None, count=2, cursor=pages[-1].next_cursor, **args))
    assert [v for p in pages for v in versions(p)] == everything
    assert len(pages) > 1 or (id and "at" in window)  # _at: one version of one resource
    assert pages[0].prev_cursor is None and all(p.prev_cursor for p in pages[1:])
    page = pages[-1]
    for i in range(len(pages) - 2, -1, -1):
        back = await store.history(type or None, id or None, count=2, cursor=page.prev_cursor, **args)
        assert versions(back) == versions(pages[i])
        assert (back.prev_cursor is None) == (i == 0)
        again = await store.history(type or None, id or None, count=2, cursor=back.next_cursor, **args)
        assert versions(again) == versions(pages[i + 1])
        page = back


@pytest.mark.parametrize("search", SEARCHES, ids=label)
async def test_both_adapters_give_the_same_pages_both_ways(sqlite_store, mongo_store, search):
    type, items = search
    query = q(type, *items)
    walks = []
    for store in (sqlite_store, mongo_store):
        await fill(store, type, 13)
        pages = await forward(store, query, 3)
        back = [pages[-1]]
        while back[-1].prev_cursor:
            back.append(await store.search(query, count=3, cursor=back[-1].prev_cursor, total=False))
        walks.append(([ids(p) for p in pages], [ids(p) for p in back]))
    assert walks[0] == walks[1]
    assert walks[0][1] == walks[0][0][::-1]


# --- plans: a backward page walks the forward page's index the other way --------------------------

PLANNED = [
    [("subject", "Patient/p")],
    [("_sort", "-_lastUpdated")],
    [("_lastUpdated", "ge2024-03-01T12:00:03Z")],
    [("subject", "Patient/p"), ("_sort", "-date")],
    [("_sort", "date")],
]


@pytest.mark.parametrize("items", PLANNED, ids=str)
async def test_sqlite_backward_pages_use_the_forward_plan(sqlite_store, items):
    from fhir_server.storage import sqlite_search

    await fill(sqlite_store, "Observation", 9)
    query = q("Observation", *items)
    first = await sqlite_store.search(query, count=3, cursor=None, total=False)
    key = decode(first.next_cursor).key
    plans = []
    for backward in (False, True):
        sql, args, _ = sqlite_search.compile_page(query, 4, key, backward=backward)
        steps = [row[3] for row in sqlite_store._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
        plans.append([re.sub(r"[<>]=?", "<>", step) for step in steps])  # the keyset bound turns around
    # A forward page sorted by a walked index may also read the resources without a value (they
    # come last); walking back from a value, nothing else is needed: the same index steps, fewer.
    assert plans[1] == plans[0] or set(plans[1]) <= set(plans[0])
    # (``SCAN m``: the page of ids an id-order walk read from its index, not a table)
    assert not any("SCAN" in step and "TEMP" not in step and step != "SCAN m" for step in plans[1])


@pytest.mark.parametrize("items", PLANNED, ids=str)
async def test_mongodb_backward_pages_sort_exactly_the_other_way(mongo_store, items):
    from fhir_server.storage import mongo_search

    query = q("Observation", *items)
    forward, backward = (mongo_search.compile_page(query, None, backward=b) for b in (False, True))
    assert backward.sort == [(f, -d) for f, d in forward.sort]  # an index serving one serves both
