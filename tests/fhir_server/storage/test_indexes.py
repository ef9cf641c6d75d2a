"""The common search shapes are answered from an index: MongoDB ``explain()``, SQLite
``EXPLAIN QUERY PLAN``."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.search.extract import extract
from fhir_server.search.plan import parse_query
from fhir_server.storage import mongo_search, sqlite_search
from fhir_server.storage.cursor import decode_cursor
from fhir_server.storage.port import Write
from tests.fhir_server.storage.conftest import REAL_MONGODB, mongodb_only

COMMON = [
    # (query items, MongoDB index, SQLite index)
    ([("patient", "Patient/p1")], "patient_id", "idx_reference_target"),
    ([("subject", "Patient/p1")], "subject_id", "idx_reference_target"),
    ([("code", "8867-4")], "code_id", "idx_token_code"),
    ([("code", "http://loinc.org|8867-4")], "code_id", "idx_token_code"),
    ([("identifier", "urn:ids|o7")], "identifier_id", "idx_token_code"),
    ([("status", "final")], "status_id", "idx_token_code"),
    ([("date", "ge2024-01-05")], "date.hi", "idx_date_hi"),
    ([("date", "lt2024-01-05")], "date.lo", "idx_date_lo"),
    ([("_lastUpdated", "ge2024-01-01T00:00:30Z"), ("_sort", "_lastUpdated")], "lu_id", "resource_type_updated"),
    ([("_sort", "-_lastUpdated")], "lu_id", "resource_type_updated"),
]


def observations(n: int = 40) -> list[Write]:
    writes = []
    for i in range(n):
        res = {
            "resourceType": "Observation", "id": f"o{i}", "status": "final" if i % 3 else "preliminary",
            "identifier": [{"system": "urn:ids", "value": f"o{i}"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": f"{8867 + i % 5}-4"}]},
            "subject": {"reference": f"Patient/p{i % 8}"}, "effectiveDateTime": f"2024-01-{1 + i % 28:02d}",
        }  # fmt: skip
        writes.append(Write("Observation", res["id"], 1, f"2024-01-01T00:00:{i:02d}.000000Z", orjson.dumps(res),
                            extract(res), 0, "POST"))  # fmt: skip
    return writes


def index_names(explain: dict) -> list[str]:
    """Stages of the winning plan as ``IXSCAN:<index>`` / ``<STAGE>`` (classic and SBE explain)."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            if "stage" in node:
                out.append(f"IXSCAN:{node.get('indexName')}" if node["stage"] == "IXSCAN" else node["stage"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(explain["queryPlanner"]["winningPlan"])
    return out


@pytest.fixture
async def mongo(mongo_store):
    await mongo_store.commit(observations())
    return mongo_store


@pytest.fixture
async def sqlite(sqlite_store):
    await sqlite_store.commit(observations())
    return sqlite_store


# Filters that are an $or of indexed conditions (date ge/le under R4 range semantics: "hi > v.hi
# or lo >= v.lo"): a MongoDB planner answers each branch from its index, SecantusDB scans.
OR_OF_INDEXES = {"date.hi"}


@pytest.mark.parametrize(("items", "index"), [(items, index) for items, index, _ in COMMON])
async def test_mongodb_answers_common_searches_from_an_index(mongo, request, items, index):
    if index in OR_OF_INDEXES and not REAL_MONGODB:
        request.applymarker(pytest.mark.mongodb_only)
        pytest.skip("needs a real MongoDB (MONGODB_URI): SecantusDB plans any filter holding $or as a collection "
                    "scan (test_mongodb_date_ge_and_le_branches_use_indexes checks each branch)")
    plan = index_names(await mongo.explain(parse_query("Observation", items)))
    assert f"IXSCAN:{index}" in plan, plan
    assert "COLLSCAN" not in plan


@pytest.mark.parametrize("value", ["ge2024-01-05", "le2024-01-05"])
async def test_mongodb_date_ge_and_le_branches_use_indexes(mongo, value):
    """Date ``ge``/``le`` compile to an ``$or`` of one-end conditions, each answered from an index."""
    filt = mongo_search.compile_filter(parse_query("Observation", [("date", value)]))
    assert list(filt) == ["$or"], filt
    for branch in filt["$or"]:
        assert len(branch) == 1 and next(iter(branch)) in ("s.date.lo", "s.date.hi"), branch
        plan = index_names(await mongo.db["Observation"].find(branch).explain())
        assert f"IXSCAN:{next(iter(branch))[2:]}" in plan and "COLLSCAN" not in plan, plan


async def test_mongodb_next_page_of_a_reference_search_uses_the_index(mongo):
    query = parse_query("Observation", [("subject", "Patient/p1")])
    first = await mongo.search(query, count=2, cursor=None, total=False)
    page = mongo_search.compile_page(query, decode_cursor(first.next_cursor))
    explain = await mongo.db["Observation"].find(page.filter).sort(page.sort).limit(3).explain()
    assert "IXSCAN:subject_id" in index_names(explain)


async def test_mongodb_referrers_and_history_use_indexes(mongo):
    refs = await mongo.db["refs"].find({"x": {"$in": ["Patient/p1"]}}).explain()
    assert "IXSCAN:x" in index_names(refs)
    history = await mongo.db["history"].find({"t": "Observation", "i": "o1"}).sort(
        [("lu", -1), ("o", -1), ("_id", -1)]).explain()  # fmt: skip
    assert "COLLSCAN" not in index_names(history)


@mongodb_only("SecantusDB does not use indexes for $elemMatch")
async def test_mongodb_date_equality_uses_an_index(mongo):
    plan = index_names(await mongo.explain(parse_query("Observation", [("date", "2024-01-05")])))
    assert any(p in plan for p in ("IXSCAN:date.lo", "IXSCAN:date.hi")), plan


@mongodb_only("SecantusDB does not use indexes for anchored regular expressions")
async def test_mongodb_string_prefix_uses_an_index(mongo_store):
    res = {"resourceType": "Patient", "id": "p", "name": [{"family": "Müller"}]}
    lu = "2024-01-01T00:00:00.000000Z"
    await mongo_store.commit([Write("Patient", "p", 1, lu, orjson.dumps(res), extract(res), 0)])
    plan = index_names(await mongo_store.explain(parse_query("Patient", [("family", "mul")])))
    assert "IXSCAN:family_id" in plan, plan


@mongodb_only("SecantusDB plans a filter on two indexed fields as a collection scan")
async def test_mongodb_combined_search_uses_an_index(mongo):
    plan = index_names(await mongo.explain(parse_query("Observation", [("patient", "Patient/p1"), ("code", "8867-4")])))
    assert any(p in plan for p in ("IXSCAN:patient_id", "IXSCAN:code_id")), plan


@mongodb_only("SecantusDB sorts in memory after any index scan")
async def test_mongodb_reference_search_is_sorted_by_the_index(mongo):
    plan = index_names(await mongo.explain(parse_query("Observation", [("subject", "Patient/p1")])))
    assert "IXSCAN:subject_id" in plan and "SORT" not in plan, plan


@pytest.mark.parametrize(("items", "index"), [(items, index) for items, _, index in COMMON])
async def test_sqlite_answers_common_searches_from_an_index(sqlite, items, index):
    sql, args, _ = sqlite_search.compile_page(parse_query("Observation", items), 51, None)
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any(f"INDEX {index} " in step for step in plan), plan


@pytest.mark.parametrize("items", [[("code", "http://loinc.org|8867-4")], [("subject", "Patient/p1")],
                                   [("code", "http://loinc.org|8867-4"), ("status", "final")]], ids=str)
async def test_sqlite_next_page_in_id_order_reads_on_from_the_value_index(sqlite, items):
    """A page of a search in id order led by one pinned value reads the ids after the cursor from
    the value index (an ``id>?`` bound on it), not every match again."""
    query = parse_query("Observation", items)
    first = await sqlite.search(query, count=2, cursor=None, total=False)
    sql, args, _ = sqlite_search.compile_page(query, 3, decode_cursor(first.next_cursor))
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any(step.startswith("SEARCH x USING COVERING INDEX idx_") and "AND id>?)" in step for step in plan), plan
    everything = [e.id for e in (await sqlite.search(query, count=1000, cursor=None, total=False)).entries]
    assert everything == sorted(everything) and len(everything) >= 3
    seen, cursor = [], None
    while True:
        page = await sqlite.search(query, count=2, cursor=cursor, total=False)
        seen += [e.id for e in page.entries]
        if not (cursor := page.next_cursor):
            break
    assert seen == everything


async def test_sqlite_has_with_many_referrers_probes_each_candidate(sqlite, monkeypatch):
    """``Patient?_has:Observation:patient:code=Y`` with many referring Observations walks the
    Patients, looking each one's referrers up in the reference index; it never lists them all."""
    from fhir_server.search import execute

    await sqlite.commit([Write("Patient", f"p{i}", 1, "2024-01-01T00:00:00.000000Z",
                               orjson.dumps({"resourceType": "Patient", "id": f"p{i}"}),
                               extract({"resourceType": "Patient", "id": f"p{i}"}), 0, "POST") for i in range(10)])
    query = parse_query("Patient", [("_has:Observation:patient:code", "8867-4")])
    assert (await execute.resolve(sqlite, query, 100)).clauses[0].__class__.__name__ == "Clause"  # 8 referrers
    monkeypatch.setattr(sqlite_search, "PROBE_MIN", 8)
    resolved = await execute.resolve(sqlite, query, 100)
    assert resolved.clauses[0].__class__.__name__ == "Referrers"
    sql, args, _ = sqlite_search.compile_page(resolved, 51, None)
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any("INDEX idx_reference_target (type=? AND param=? AND target=?)" in step for step in plan), plan
    assert not any("idx_token_code" in step for step in plan), plan
    page = await sqlite.search(resolved, count=50, cursor=None, total=True)
    # o0, o5, o10, ... have code 8867-4: subjects p0 and p5 (i % 8 for i in 0, 5, 10, ...)
    expected = sorted({f"p{i % 8}" for i in range(40) if i % 5 == 0})
    assert [e.id for e in page.entries] == expected and page.total == len(expected)


async def test_sqlite_last_updated_range_uses_its_index_without_sort(sqlite):
    sql, args, _ = sqlite_search.compile_page(parse_query("Observation", [("_lastUpdated", "ge2024-01-01T00:00:30Z")]),
                                              51, None)  # fmt: skip
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any("INDEX resource_type_updated " in step for step in plan), plan



SORTS = [
    # (query items, MongoDB index that gives the order: its equality fields, then the sort)
    ([("_sort", "-date")], "sort_-date"),
    ([("_sort", "date")], "sort_date"),
    ([("patient", "Patient/p1"), ("_sort", "-date")], "patient_sort_-date"),
    ([("subject", "Patient/p1"), ("_sort", "-date")], "subject_sort_-date"),
]


@pytest.mark.parametrize(("items", "index"), SORTS)
async def test_mongodb_sort_indexes_hold_the_sort_order(mongo, items, index):
    """Each sort index is (equality fields, then exactly the sort ``compile_page`` asks for), so a
    MongoDB planner can walk it in order instead of sorting."""
    query = parse_query("Observation", items)
    page = mongo_search.compile_page(query, None)
    assert not page.computed
    equality = [(f"s.{c.param}", 1) for c in query.clauses]
    indexes = {ix["name"]: list(ix["key"].items()) async for ix in await mongo.db["Observation"].list_indexes()}
    assert indexes[index] == equality + page.sort


@mongodb_only("SecantusDB sorts in memory after any index scan")
@pytest.mark.parametrize(("items", "index"), SORTS)
async def test_mongodb_sort_by_date_is_read_in_index_order(mongo, items, index):
    plan = index_names(await mongo.explain(parse_query("Observation", items)))
    assert f"IXSCAN:{index}" in plan, plan
    assert "SORT" not in plan and "COLLSCAN" not in plan, plan


async def test_mongodb_many_valued_reference_clause_is_one_indexed_in(mongo):
    """A resolved chain hands over up to 10,000 targets: one ``$in`` on the reference index."""
    from fhir_server.search.plan import Clause, Query, Value

    targets = tuple(Value(text=f"Patient/p{i}") for i in range(10_000))
    query = Query("Observation", (Clause("subject", "reference", None, targets),))
    assert mongo_search.compile_filter(query) == {"s.subject": {"$in": [v.text for v in targets]}}
    plan = index_names(await mongo.explain(query))
    assert "IXSCAN:subject_id" in plan and "COLLSCAN" not in plan, plan
    page = await mongo.search(query, count=100, cursor=None, total=True)
    assert page.total == 40
    negated = Query("Observation", (Clause("subject", "reference", "not", targets),))
    listed = {"s.subject": {"$in": [v.text for v in targets]}}
    assert mongo_search.compile_filter(negated) == {"d": False, "$nor": [listed]}


# --- composite parameters ---------------------------------------------------------------------

LOINC = "http://loinc.org"
SYSTOLIC = "component-code-value-quantity=http://loinc.org|8480-6$gt140"


def blood_pressures(n: int = 40) -> list[Write]:
    """Panels whose systolic and diastolic readings are components of their own."""
    writes = []
    mm = {"system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    for i in range(n):
        components = [{"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": v, **mm}}
                      for code, v in (("8480-6", 110 + i), ("8462-4", 70 + i % 30))]
        res = {"resourceType": "Observation", "id": f"bp{i}", "status": "final", "component": components,
               "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
               "subject": {"reference": f"Patient/p{i % 8}"}}
        writes.append(Write("Observation", res["id"], 1, f"2024-01-02T00:00:{i:02d}.000000Z", orjson.dumps(res),
                            extract(res), 0, "POST"))  # fmt: skip
    return writes


def _items(query: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in query.split("&")]


@pytest.mark.parametrize("query", [
    SYSTOLIC,
    "component-code-value-quantity=8480-6$gt140,8462-4$gt95",  # alternatives: one IN list of first codes
    "combo-code-value-quantity=8480-6$gt140&status=final",
])
async def test_sqlite_composite_seeks_its_first_component_then_the_same_element(sqlite, query):
    await sqlite.commit(blood_pressures())
    sql, args, _ = sqlite_search.compile_page(parse_query("Observation", _items(query)), 51, None)
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any("INDEX idx_composite_code (type=? AND param=? AND comp=? AND code=?" in step for step in plan), plan
    assert any("INDEX idx_composite_res (type=? AND id=? AND param=? AND elem=? AND comp=?)" in step
               for step in plan), plan


async def test_sqlite_composite_probe_after_a_reference_lead_uses_the_element_index(sqlite):
    await sqlite.commit(blood_pressures())
    query = parse_query("Observation", [("subject", "Patient/p1"), *_items(SYSTOLIC)])
    sql, args, _ = sqlite_search.compile_page(query, 51, None)
    plan = [row[3] for row in sqlite._reader.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert any("INDEX idx_reference_target " in step for step in plan), plan
    assert any("SEARCH y USING INDEX idx_composite_res " in step for step in plan), plan
    page = await sqlite.search(query, count=50, cursor=None, total=True)
    assert [e.id for e in page.entries] == ["bp33"] and page.total == 1


async def test_mongodb_composite_is_one_elem_match_over_an_indexed_first_component(mongo):
    await mongo.commit(blood_pressures())
    filt = mongo_search.compile_filter(parse_query("Observation", _items(SYSTOLIC)))
    (field, cond), = filt.items()
    assert field == "s.component-code-value-quantity"
    assert list(cond["$elemMatch"]) == ["c0", "c1"] and cond["$elemMatch"]["c0"] == f"{LOINC}|8480-6"
    indexes = {ix["name"]: list(ix["key"].items()) async for ix in await mongo.db["Observation"].list_indexes()}
    for code in ("code-value-quantity", "component-code-value-quantity"):
        assert indexes[f"{code}_id"] == [(f"s.{code}.c0", 1), ("_id", 1)]
    page = await mongo.search(parse_query("Observation", _items(SYSTOLIC)), count=50, cursor=None, total=True)
    assert page.total == 9


@mongodb_only("SecantusDB does not use indexes for $elemMatch")
@pytest.mark.parametrize("query", [SYSTOLIC, "component-code-value-quantity=8480-6$gt140,8462-4$gt95"])
async def test_mongodb_composite_search_uses_its_index(mongo, query):
    await mongo.commit(blood_pressures())
    plan = index_names(await mongo.explain(parse_query("Observation", _items(query))))
    assert "IXSCAN:component-code-value-quantity_id" in plan and "COLLSCAN" not in plan, plan
