"""SQLite's sort-index walk (sqlite_search._sort_walk) gives exactly the general plan's pages.

The store walks the sort parameter's index only when the leading clause matches at least
WALK_MIN resources, which small test data never does: here WALK_MIN is 1, so every walkable
search walks, and the paging tests of test_paging_back run again over it.
"""

from __future__ import annotations

import pytest

from fhir_server.storage import sqlite_search
from tests.fhir_server.storage import test_paging_back as paging
from tests.fhir_server.storage.test_contract import Writer, observation, patient, q


@pytest.fixture
def store(sqlite_store, monkeypatch):
    monkeypatch.setattr(sqlite_search, "WALK_MIN", 1)
    return sqlite_store


test_previous_cursors_walk_back_through_the_same_pages = paging.test_previous_cursors_walk_back_through_the_same_pages
test_paging_both_ways_while_resources_are_inserted_skips_and_repeats_none = (
    paging.test_paging_both_ways_while_resources_are_inserted_skips_and_repeats_none)

WALKED = [
    ("Patient", [("_sort", "family")]),
    ("Patient", [("_sort", "-family")]),
    ("Patient", [("_sort", "birthdate")]),
    ("Patient", [("_sort", "-birthdate")]),
    ("Patient", [("_sort", "gender")]),
    ("Patient", [("gender", "female,male"), ("_sort", "-birthdate")]),
    ("Observation", [("_sort", "-date")]),
    ("Observation", [("status", "final"), ("_sort", "date")]),
    ("Observation", [("status", "final"), ("date", "ge2024"), ("_sort", "-date")]),
]


@pytest.mark.parametrize("search", WALKED, ids=paging.label)
@pytest.mark.parametrize("count", [1, 3, 1000])
async def test_walk_pages_equal_the_general_plan(sqlite_store, monkeypatch, search, count):
    type, items = search
    w = Writer(sqlite_store)
    await paging.fill(sqlite_store, type, 23)
    # multi-valued dates: an Observation with a period sorts by its start ascending, end descending
    await w.put(observation("wide", subject={"reference": "Patient/p"},
                            effectivePeriod={"start": "2023-01-01", "end": "2025-01-01"}),
                patient("two-names", name=[{"family": "Aardvark"}, {"family": "Zzyzx"}]))
    query = q(type, *items)
    monkeypatch.setattr(sqlite_search, "WALK_MIN", 10**9)
    general = [e.id for p in await paging.forward(sqlite_store, query, count) for e in p.entries]
    monkeypatch.setattr(sqlite_search, "WALK_MIN", 1)
    sql, args, _ = sqlite_search.compile_page(query, count + 1, None, walk_index=True)
    assert "INDEXED BY idx_" in sql and "UNION ALL" in sql  # the walk, not the general plan
    walked = [e.id for p in await paging.forward(sqlite_store, query, count) for e in p.entries]
    assert walked == general and len(general) >= 10
