"""``_sort`` correctness: the full order over every page, on both adapters.

Each case pages through the results with a small ``_count`` (following ``next`` links) and
compares the order with the oracle's (``Oracle.order``). The rules assumed (R4 leaves them to the
server; these are the project's): a parameter with several values sorts ascending by its lowest
value and descending by its highest; a date by its range (ascending by where it starts, a Period
open at the start first; descending by where it ends, one open at the end first); strings by their
case- and accent-folded form; tokens by code; quantities by UCUM-canonical value; resources
without a value sort last in either direction. The tie order between resources with equal keys is
not specified, so the comparison is on the sequence of sort keys (ties in any order); the oracle
itself breaks ties by id.
"""

from __future__ import annotations

import pytest

from tests.fhir_server.search.correctness_cases import case, expect_known, fill, labelled, parse
from tests.fhir_server.search.correctness_world import LOINC, world  # noqa: F401  (the fixture)
from tests.fhir_server.search.oracle import parse_sort

SORTS = [
    case("Patient?_sort=birthdate"), case("Patient?_sort=-birthdate"), case("Patient?_sort=family"),
    case("Patient?_sort=-family"), case("Patient?_sort=given"), case("Patient?_sort=-given"),
    case("Patient?_sort=gender,-birthdate"), case("Patient?_sort=family,given"), case("Patient?_sort=-death-date"),
    case("Patient?_sort=death-date"), case("Patient?_sort=_id"), case("Patient?_sort=-_id"),
    case("Patient?_sort=_lastUpdated"), case("Patient?_sort=-_lastUpdated"), case("Patient?_sort=address-city"),
    case("Patient?_sort=-address-city"), case("Patient?_sort=identifier"), case("Patient?_sort=-identifier"),
    case("Patient?_sort=birthdate,family,-_id"), case("Patient?_sort=-gender,family,-given"),
    case("Patient?gender=female,male&_sort=-birthdate,given"), case("Patient?_sort=name"), case("Patient?_sort=-name"),
    case("Patient?name=a&_sort=family"),
    case("Observation?_sort=date"), case("Observation?_sort=-date"),
    case(f"Observation?code={LOINC}|29463-7&_sort=value-quantity"),
    case(f"Observation?code={LOINC}|29463-7&_sort=-value-quantity"),
    case(f"Observation?code={LOINC}|29463-7&_sort=value-quantity,-date"),
    case("Observation?_sort=status,-date"), case("Observation?_sort=code"), case("Observation?_sort=-code,date"),
    case("Observation?_sort=subject"), case("Observation?status=final&_sort=-date,_id"),
    case("Encounter?_sort=date"), case("Encounter?_sort=-date"), case("Encounter?_sort=length"),
    case("Encounter?_sort=-length"), case("Encounter?_sort=status,date"), case("Encounter?_sort=class,-length"),
    case("RiskAssessment?_sort=probability"), case("RiskAssessment?_sort=-probability"),
    case("RiskAssessment?_sort=date,-probability"), case("ValueSet?_sort=url"), case("ValueSet?_sort=-url"),
]
PAGE_SIZES = [7, 1000]


@pytest.mark.parametrize("count", PAGE_SIZES)
@pytest.mark.parametrize("query,known", SORTS)
async def test_sort_order_matches_the_oracle(request, world, query, known, count):  # noqa: F811
    expect_known(request, world, known)
    type, items = parse(fill(world, query))
    sort = parse_sort(dict(items)["_sort"])
    expected = world.oracle.search(type, items)
    assert not expected.may, "a sort case must have an unambiguous match set"
    entries = await world.search(type, [*items, ("_count", str(count))])
    got = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    assert len(got) == len(set(got)), f"a resource on two pages: {labelled(world, got)}"
    assert set(got) == expected.must, (
        f"missing {labelled(world, expected.must - set(got))}, unexpected {labelled(world, set(got) - expected.must)}")
    oracle = world.oracle
    want = oracle.order(type, expected.must, sort)
    keys = [oracle.sort_keys(type, oracle.resources(type)[i], sort) for i in got]
    want_keys = [oracle.sort_keys(type, oracle.resources(type)[i], sort) for i in want]
    if keys != want_keys:
        first = next(n for n, (a, b) in enumerate(zip(keys, want_keys)) if a != b)
        raise AssertionError(
            f"{query}: order differs from position {first}:\n  got      {labelled_seq(world, got[first:first + 6])} "
            f"keys {keys[first:first + 6]}\n  expected {labelled_seq(world, want[first:first + 6])} "
            f"keys {want_keys[first:first + 6]}")


def labelled_seq(world, ids) -> list[str]:
    back = {v: k for k, v in world.ids.items()}
    return [back.get(i, i) for i in ids]
