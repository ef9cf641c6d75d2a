"""Composite search parameters (R4 3.1.1.5.8), on both adapters, against the oracle.

The world's composite extras (``correctness_world._composite_extras``) hold blood-pressure panels
whose readings sit in components of their own, so a search that took its code from one component
and its value from another would return them wrongly (systolic 150 with diastolic 80 must not
match ``component-code-value-quantity=8462-4$gt140``); concepts, dates and strings as
``value[x]``; codes holding ``$`` and ``,``; DocumentReferences relating to several others.
"""

from __future__ import annotations

import pytest

from tests.fhir_server.search.correctness_cases import case, check_matches, expect_known
from tests.fhir_server.search.correctness_world import (ACME, BP_PANEL, COVID, COVID_AB, DETECTED, DIASTOLIC, LOINC,
                                                        NOT_DETECTED, SNOMED, STRICT, SYSTOLIC, UCUM,
                                                        world)  # noqa: F401  (the fixture)

PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
COMPONENT = "Observation?component-code-value-quantity="


def _quantities() -> list:
    out = [case(f"{COMPONENT}{v}") for v in [
        f"{LOINC}|{DIASTOLIC}$gt140", f"{DIASTOLIC}$gt140", f"{SYSTOLIC}$gt140", f"{SYSTOLIC}$lt100",
        f"{LOINC}|{SYSTOLIC}$gt140|{UCUM}|mm[Hg]", f"{SYSTOLIC}$150||mmHg", f"{SYSTOLIC}$150||mm[Hg]",
        f"{DIASTOLIC}$gt11|{UCUM}|kPa", f"{DIASTOLIC}$ge86|{UCUM}|mm[Hg]", f"{DIASTOLIC}$lt12|{UCUM}|kPa",
        f"{DIASTOLIC}$11.5|{UCUM}|kPa", f"{DIASTOLIC}$gt12|{UCUM}|kPa", f"{ACME}|sys$gt140", f"{ACME}|dia$90",
        f"{ACME}|$gt100", f"{LOINC}|$lt81", f"|{SYSTOLIC}$150", f"{SNOMED}|{SYSTOLIC}$150", f"{BP_PANEL}$gt0",
        f"{SYSTOLIC}$gt145,{DIASTOLIC}$gt92", f"{SYSTOLIC}$lt125,{DIASTOLIC}$lt82,{ACME}|dia$90",
    ]]
    out += [case(f"{COMPONENT}{DIASTOLIC}${p}90") for p in PREFIXES]
    out += [case(f"{COMPONENT}{SYSTOLIC}${p}150|{UCUM}|mm[Hg]") for p in PREFIXES]
    out += [
        case(f"{COMPONENT}{SYSTOLIC}$gt130&component-code-value-quantity={DIASTOLIC}$lt90"),
        case(f"{COMPONENT}{SYSTOLIC}$gt130&code={BP_PANEL}&status=final"),
        case(f"Observation?combo-code-value-quantity={SYSTOLIC}$gt140"),  # the panels' and a reading on its own
        case(f"Observation?combo-code-value-quantity={DIASTOLIC}$gt140"),
        case(f"Observation?code-value-quantity={SYSTOLIC}$gt140"),
        case(f"Observation?code-value-quantity={LOINC}|{BP_PANEL}$gt0"),  # the panel itself has no value
        case("Observation?code-value-quantity=|bp-local$130"), case("Observation?code-value-quantity=bp-local$le130"),
        case(f"Observation?code-value-quantity={LOINC}|29463-7$gt5|{UCUM}|g"),
        case(f"Observation?code-value-quantity=29463-7$5|{UCUM}|kg"),
        case("Observation?code-value-quantity=29463-7$5||mg"),
        case(f"Observation?code-value-quantity={LOINC}|15074-8$le5.4|{UCUM}|mmol/L"),
        case(f"Observation?code-value-quantity=15074-8$gt5000|{UCUM}|umol/L"),
        case(f"Observation?code-value-quantity={ACME}|29463-7$5,{ACME}|wt-local$5"),
        case(f"Observation?combo-code-value-quantity=29463-7$lt5|{UCUM}|g"),
    ]
    return out


def _concepts() -> list:
    return [case(f"Observation?{p}={v}") for p, v in [
        ("code-value-concept", f"{COVID}${DETECTED}"),
        ("code-value-concept", f"{LOINC}|{COVID}${SNOMED}|{NOT_DETECTED}"),
        ("code-value-concept", f"{COVID}${SNOMED}|"), ("code-value-concept", f"{COVID}$|{DETECTED}"),
        ("component-code-value-concept", f"{COVID}${DETECTED}"),  # detected is the other component's value
        ("component-code-value-concept", f"{COVID}${NOT_DETECTED}"),
        ("component-code-value-concept", f"{COVID_AB}${DETECTED},{COVID}${DETECTED}"),
        ("combo-code-value-concept", f"{COVID}${DETECTED}"), ("combo-code-value-concept", f"{COVID_AB}${SNOMED}|"),
    ]]


def _dates_and_strings() -> list:
    out = [case(f"Observation?code-value-date=onset${p}{v}") for v in ["2024-05-03", "2024-05", "2024-05-04"]
           for p in PREFIXES]
    out += [case(f"Observation?code-value-date={v}") for v in [
        f"{ACME}|onset$2024-05-03T10:00:00Z", "onset$ge2024-05-03T22:00:00Z", "recorded$2024-05-03",
        "recorded$2024-05-03T10:00:00Z", f"{ACME}|$2024", "onset$lt2024-05-01,recorded$2024", "onset$sa2024-04",
        "onset$eb2024-06", "onset$sa2024-05-02",
    ]]
    out += [case(f"Observation?code-value-string={v}") for v in [
        "note$pos", "note$NÉG", f"{ACME}|note$positive r", "note$result", "note$x", "onset$pos",
    ]]
    return out


def _escapes_and_references() -> list:
    return [
        case("Observation?code-value-quantity=a\\$b$5"), case(f"Observation?code-value-quantity={ACME}|a\\$b$gt4"),
        case("Observation?code-value-quantity=a\\$b$5,x\\,y$5"),
        case("Observation?code-value-string=x\\,y$z\\$w\\, q"), case("Observation?code-value-string=x\\,y$z"),
        case("Observation?code-value-string=x\\,y$z\\$w,note$neg"),
        case("DocumentReference?relationship=DocumentReference/{D0}$replaces"),
        case("DocumentReference?relationship={D0}$replaces"),
        case("DocumentReference?relationship={D0}$appends"),  # D2 appends D1, not D0
        case("DocumentReference?relationship={D1}$appends,DocumentReference/{D0}$transforms"),
        case("DocumentReference?relationship={D2}$transforms"),  # D3 transforms D0 and appends D2
        case("DocumentReference?relationship={D2}$appends&relationship={D0}$transforms"),
        case("DocumentReference?relatesto.relationship={D0}$replaces"),  # in a chain: D3 relates to D2
        case(f"Patient?_has:Observation:patient:component-code-value-quantity={SYSTOLIC}$gt140"),
        case(f"Patient?_has:Observation:patient:component-code-value-quantity={DIASTOLIC}$gt140"),
    ]


CASES = _quantities() + _concepts() + _dates_and_strings() + _escapes_and_references()


@pytest.mark.parametrize("query,known", CASES)
async def test_composite_search_matches_the_oracle(request, world, query, known):  # noqa: F811
    expect_known(request, world, known)
    await check_matches(world, query)


async def test_systolic_150_with_diastolic_80_is_not_a_high_diastolic(world):  # noqa: F811
    """The trap named in the module docstring, spelled out: the panel is found by its systolic."""
    high_systolic = await check_matches(world, f"{COMPONENT}{LOINC}|{SYSTOLIC}$gt140")
    high_diastolic = await check_matches(world, f"{COMPONENT}{LOINC}|{DIASTOLIC}$gt140")
    (panel,) = [r["id"] for r in world.resources
                if [c.get("valueQuantity", {}).get("value") for c in r.get("component", ())] == [150, 80]]
    assert panel in high_systolic and panel not in high_diastolic


@pytest.mark.parametrize(("name", "value"), [
    ("component-code-value-quantity", f"{SYSTOLIC}"),  # one component of two
    ("component-code-value-quantity", f"{SYSTOLIC}$1$2"),
    ("component-code-value-quantity", f"{SYSTOLIC}$"),
    ("component-code-value-quantity", f"{SYSTOLIC}$high"),  # not a quantity
    ("code-value-date", "onset$yesterday"),
    ("component-code-value-quantity:missing", "true"),  # no modifiers on composites
    ("code-value-concept:not", f"{COVID}${DETECTED}"),
    ("code-value-concept:text", "covid"),
])
@pytest.mark.parametrize("prefer", [STRICT, {}])
async def test_malformed_composite_values_and_modifiers_are_400(world, name, value, prefer):  # noqa: F811
    r = await world.client.get("/Observation", params={name: value}, headers=prefer)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid" and issue["expression"] == [name]


async def test_sorting_by_a_composite_is_400(world):  # noqa: F811
    r = await world.get("/Observation", [("_sort", "code-value-quantity")])
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_sort"]


async def test_capability_statement_lists_the_composites(world):  # noqa: F811
    statement = (await world.get("/metadata")).json()
    params = {r["type"]: {p["name"]: p for p in r["searchParam"]} for r in statement["rest"][0]["resource"]}
    listed = params["Observation"]["component-code-value-quantity"]
    assert listed["type"] == "composite"
    assert listed["definition"] == "http://hl7.org/fhir/SearchParameter/Observation-component-code-value-quantity"
    assert {"code-value-quantity", "code-value-concept", "code-value-date", "code-value-string",
            "combo-code-value-quantity", "combo-code-value-concept",
            "component-code-value-concept"} <= set(params["Observation"])
    assert params["DocumentReference"]["relationship"]["type"] == "composite"
    assert sum(p["type"] == "composite" for ps in params.values() for p in ps.values()) == 72


async def test_a_composite_is_a_filter_not_an_ignored_parameter(world):  # noqa: F811
    r = await world.client.get("/Observation", params={"component-code-value-quantity": f"{SYSTOLIC}$gt0"})
    assert r.status_code == 200
    modes = [e["search"]["mode"] for e in r.json().get("entry", [])]
    assert "outcome" not in modes and 0 < modes.count("match") < 50  # panels only, no warning
