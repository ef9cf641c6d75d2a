"""Search correctness across references: chains, ``_has``, ``_include`` / ``_revinclude``.

The oracle follows references by hand (``Oracle.match`` for chains and ``_has``,
``Oracle.includes`` for what a page includes); each case runs on both adapters.
"""

from __future__ import annotations

import pytest

from fhir_server.storage import sqlite_search

from tests.fhir_server.search.correctness_cases import case, check_matches, expect_known, fill, labelled, parse
from tests.fhir_server.search.correctness_world import ACME, LOINC, MRN, UCUM, world  # noqa: F401  (the fixture)

CHAINS = [
    case("Observation?subject:Patient.family=müller"), case("Observation?patient.family=nunez"),
    case(f"Observation?patient.identifier={MRN}|1001"), case("Observation?patient.identifier=|1001"),
    case("Observation?patient.identifier=1001,A-7"), case("Observation?subject.name=ann"),
    case("Observation?subject.name=елкин"), case("Observation?patient.birthdate=lt1980-06"),
    case("Observation?patient.birthdate=ge2000&code=29463-7"), case("Observation?patient.gender=female&code=29463-7"),
    case("Observation?patient.gender:missing=true"), case("Observation?patient.gender:not=female"),
    case("Observation?encounter.status=finished"), case("Observation?encounter.class=EMER"),
    case("Observation?encounter.date=2024-05"), case("Observation?encounter.date=ge2024-05-03"),
    case("Observation?encounter.patient.family=smith"),
    case("Observation?encounter.subject:Patient.address-city=zurich"),
    case("Observation?encounter.length=gt1|" + UCUM + "|h"), case("Observation?subject:Patient._id={P8}"),
    case("Observation?subject:Group._id={G2}"), case("Observation?patient.death-date=2024"),
    case("Encounter?patient.name=zoe"), case("Encounter?subject:Patient.gender=male,other"),
    case("RiskAssessment?patient.gender=female"), case("RiskAssessment?patient.name=smith&probability=gt0.2"),
    case("Observation?patient.family=smith&patient.gender=female"),
    case("Observation?patient.family:exact=Smith"), case("Observation?patient.family:contains=ll"),
]

HAS = [
    case(f"Patient?_has:Observation:patient:code={LOINC}|29463-7"),
    case(f"Patient?_has:Observation:subject:value-quantity=gt5|{UCUM}|g"),
    case("Patient?_has:Encounter:patient:status=finished"),
    case("Patient?_has:Encounter:subject:class=EMER&gender=female"),
    case("Patient?_has:RiskAssessment:patient:probability=gt0.5"),
    case("Patient?_has:Observation:patient:encounter.status=finished"),
    case("Patient?_has:Observation:patient:date=2024-05-03"),
    case("Patient?_has:Observation:patient:status=final&_has:Encounter:patient:class=AMB"),
    case("Patient?_has:Observation:patient:code:text=poids"),
    case(f"Patient?_has:Observation:patient:code={ACME}|"),
    case("Patient?_has:Encounter:patient:_has:Observation:encounter:code=29463-7"),
    case("Encounter?_has:Observation:encounter:code=29463-7"),
    case("Encounter?_has:Observation:encounter:value-quantity:missing=true"),
    case("Group?_has:Observation:subject:status=final"),
    case("Patient?_has:Observation:patient:status=cancelled&family=елкин"),
    case("Patient?_has:Observation:patient:_id={O5},{O6},{O7}"),
]


@pytest.mark.parametrize("query,known", CHAINS + HAS)
async def test_chains_and_has_match_the_oracle(request, world, query, known):  # noqa: F811
    expect_known(request, world, known)
    await check_matches(world, query)


@pytest.mark.parametrize("query,known", HAS)
async def test_has_probing_each_candidate_matches_the_oracle(request, world, query, known, monkeypatch):  # noqa: F811
    """The embedded store turns a ``_has`` with many referrers into a probe of each candidate
    (``Referrers``) instead of listing the referenced ids; with the threshold at one referrer,
    every ``_has`` case takes that path and must still match the oracle."""
    if world.store != "sqlite":
        pytest.skip("only the embedded store probes referrers")
    expect_known(request, world, known)
    monkeypatch.setattr(sqlite_search, "PROBE_MIN", 1)
    await check_matches(world, query)


INCLUDES = [
    case(f"Observation?code={LOINC}|29463-7&_include=Observation:patient"),
    case("Observation?status=final&_include=Observation:subject"),
    case("Observation?status=final&_include=Observation:subject:Group"),
    case("Observation?date=ge2024-05&_include=Observation:encounter&_include:iterate=Encounter:patient"),
    case("Observation?_include=Observation:encounter&_include:iterate=Encounter:subject"),
    case("Patient?gender=female&_revinclude=Observation:subject"),
    case("Patient?family=müller&_revinclude=Observation:patient&_revinclude=Encounter:subject"),
    case("Encounter?status=finished&_revinclude=Observation:encounter&_include=Encounter:subject"),
    case("Patient?name=smith&_revinclude=RiskAssessment:subject"),
    case("Observation?code=2339-0,15074-8&_include=Observation:patient&_revinclude:iterate=RiskAssessment:subject"),
    case("Group?_revinclude=Observation:subject"),
    case("Observation?code=2339-0&_include=Observation:*"),
    case("Observation?status=final&_include=Observation:subject:Patient"),
    case("Patient?_id={P8},{P0}&_revinclude=Observation:patient&_revinclude=Encounter:patient"),
    case("Observation?value-quantity=lt1|" + UCUM + "|g&_include=Observation:patient&_include=Observation:encounter"),
]


@pytest.mark.parametrize("query,known", INCLUDES)
async def test_includes_match_the_oracle(request, world, query, known):  # noqa: F811
    expect_known(request, world, known)
    type, items = parse(fill(world, query))
    entries = await world.search(type, [*items, ("_count", "1000")])
    matches = await check_matches(world, query)
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == matches
    rules = [(n, v) for n, v in items if n.startswith(("_include", "_revinclude"))]
    expected = world.oracle.includes(type, set(matches), rules)
    included = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries
                if e["search"]["mode"] == "include"]
    assert len(included) == len(set(included)), "a resource included twice"
    assert not [e for e in entries if e["search"]["mode"] == "outcome"], "includes left out"
    got = set(included)
    assert got == expected, (
        f"{query}\n  not included: {labelled(world, [i for _, i in expected - got])}"
        f"\n  included but not expected: {labelled(world, [i for _, i in got - expected])}")


@pytest.mark.parametrize("query,known", INCLUDES)
async def test_includes_over_pages_match_the_oracle(request, world, query, known):  # noqa: F811
    """Paged by 5, each page includes what its own matches reference: over all pages, the
    matches and included resources together are the oracle's matches and their includes."""
    expect_known(request, world, known)
    type, items = parse(fill(world, query))
    expected = world.oracle.search(type, items)
    rules = [(n, v) for n, v in items if n.startswith(("_include", "_revinclude"))]
    want = {(type, i) for i in expected.must} | world.oracle.includes(type, set(expected.must), rules)
    entries = await world.search(type, [*items, ("_count", "5")])
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries if e["search"]["mode"] != "outcome"}
    assert not expected.may
    assert got == want, (f"{query}\n  missing: {labelled(world, [i for _, i in want - got])}"
                         f"\n  unexpected: {labelled(world, [i for _, i in got - want])}")
