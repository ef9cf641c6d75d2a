"""Search correctness per parameter type, modifier and prefix, on both adapters.

Each case runs one search over the seeded world (``correctness_world``) and compares the set of
matches with the independent oracle (``oracle.py``), which reads the resources' JSON itself and
applies the rules of http://hl7.org/fhir/R4/search.html. Values sit at the boundaries of the
data's ranges (precision, time zones, open Periods, unit conversions).
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fhir_server.search.correctness_cases import case, check_matches, expect_known, parse
from tests.fhir_server.search.correctness_world import ACME, ACT_CODE, CATEGORY, LOINC, MRN, OTHER, SNOMED, SSN, \
    UCUM, V2_0203, build_dataset, world  # noqa: F401  (the fixture)

DATASET = build_dataset()

DATE_PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
ORDER_PREFIXES = ["", "ne", "gt", "lt", "ge", "le"]


def _strings() -> list:
    out = []
    for v in ["smi", "SMITH", "smithers", "nunez", "ÑÚÑEZ", "ñu", "muller", "MÜL", "mue", "елкин", "ЁЛК", "ёлкин",
              "o'b", "van der", "vanderberg", "garcia", "garcía-l", "zoe", "angst", "dvorak", "chloe", "ann", "anais",
              "jose", "bjorn", "renee", "elodie", "eli", "dr", "anonymous", "nothing-like-this", "jose mü",
              "élodie ñ", "dr."]:
        out.append(case(f"Patient?name={v}"))
    for v in ["smith", "nun", "müller", "van", "Ёлкин", "Dvořák", "o'brien"]:
        out.append(case(f"Patient?family={v}"))
    for v in ["an", "ANNA", "jo", "él", "ёж", "li"]:
        out.append(case(f"Patient?given={v}"))
    for v in ["Smith", "smith", "Müller", "MULLER", "Ñúñez", "Nunez", "Ёлкин", "Елкин", "van der Berg", "van", "Dvořák",
              "Dvorak"]:
        out.append(case(f"Patient?family:exact={v}"))
    for v in ["Anonymous", "anonymous", "Jose", "Dr."]:
        out.append(case(f"Patient?name:exact={v}"))
    for v in ["ull", "ÜLL", "ith", "der b", "ez", "лк", "'", "ö", "RÖM"]:
        out.append(case(f"Patient?family:contains={v}"))
    for v in ["na", "ÏS", "ёж"]:
        out.append(case(f"Patient?given:contains={v}"))
    for v in ["sao", "São Paulo", "zur", "ZÜRICH", "montr", "моск", "kol", "köln", "paulo"]:
        out.append(case(f"Patient?address-city={v}"))
    for v in ["Zürich", "Zurich", "montreal", "Montréal"]:
        out.append(case(f"Patient?address-city:exact={v}"))
    for v in ["paul", "ÜRI", "o p"]:
        out.append(case(f"Patient?address-city:contains={v}"))
    for v in ["haupt", "1 rue", "h2x", "12 main", "zurich", "main"]:
        out.append(case(f"Patient?address={v}"))
    for v in ["_", "%", ".", "(", "*", "% p", "m (l"]:
        out.append(case(f"Patient?family:contains={v}"))
    for v in ["under_", "100%", "dot.", "star*", "dot.com (", "."]:
        out.append(case(f"Patient?family={v}"))
    out.append(case("Patient?address:contains=main"))
    out.append(case("Patient?address-postalcode=h2x"))
    for p in ["family", "name", "given", "address-city", "address"]:
        out += [case(f"Patient?{p}:missing=true"), case(f"Patient?{p}:missing=false")]
    for v in ["pos", "NEG", "olw", "positive r", "Positive"]:
        out.append(case(f"Observation?value-string={v}"))
    out += [case("Observation?value-string:exact=positive"), case("Observation?value-string:contains=ti"),
            case("Observation?value-string:missing=true"), case("ValueSet?name=vs1"), case("ValueSet?name:exact=vs1")]
    return out


def _tokens() -> list:
    out = []
    for v in ["1001", f"{MRN}|1001", f"{SSN}|1001", "|1001", f"{MRN}|", f"{OTHER}|", f"{SSN}|", "|A-7", "A-7", "a-7",
              f"{MRN}|a-7", f"{MRN}|A-7", f"{OTHER}|12\\,5", "12\\,5", f"{MRN}|x\\|y", "x\\|y", "1002", "|1002",
              "1001,1002", f"{MRN}|1001,|A-7", "nope", f"{OTHER}|1001", "1003"]:
        out.append(case(f"Patient?identifier={v}"))
    for v in ["1001", f"{MRN}|1001", f"{MRN}|", "|1001"]:
        out.append(case(f"Patient?identifier:not={v}"))
    out += [case("Patient?identifier:missing=true"), case("Patient?identifier:missing=false")]
    for v in [f"{V2_0203}|MR|1003", f"{V2_0203}|SS|1002", f"{OTHER}|nir|1002", f"{V2_0203}|MR|1002",
              f"{V2_0203}|MR|1003,{V2_0203}|SS|1002"]:
        out.append(case(f"Patient?identifier:of-type={v}"))
    for v in ["medical", "SÉCU", "securite", "record"]:
        out.append(case(f"Patient?identifier:text={v}"))
    for v in ["female", "male,other", "unknown", "FEMALE", "male"]:
        out.append(case(f"Patient?gender={v}"))
    out += [case("Patient?gender:not=female"), case("Patient?gender:not=male,female"),
            case("Patient?gender:missing=true"), case("Patient?gender:missing=false")]
    out += [case("Patient?active=true"), case("Patient?active=false"), case("Patient?active:not=true"),
            case("Patient?active:missing=true")]
    for v in ["+1 555 0100", "ann@example.org", "ANN@example.org", "+1-555-0101", "+1 555 0199"]:
        out.append(case(f"Patient?telecom={v}"))
    out += [case("Patient?phone=+1 555 0100"), case("Patient?phone=ann@example.org"),
            case("Patient?email=ann@example.org"), case("Patient?email=+1 555 0199"),
            case("Patient?telecom:missing=true"), case("Patient?email:missing=false")]
    for v in ["29463-7", f"{LOINC}|29463-7", f"{ACME}|29463-7", "|29463-7", f"{ACME}|", f"{LOINC}|",
              f"{SNOMED}|27113001", "27113001", f"{LOINC}|2339-0,{LOINC}|15074-8", "wt-local", f"{LOINC}|27113001",
              f"{SNOMED}|", "|wt-local", f"{ACME}|wt-local,|29463-7"]:
        out.append(case(f"Observation?code={v}"))
    out += [case(f"Observation?code:not={LOINC}|29463-7"), case("Observation?code:not=29463-7"),
            case(f"Observation?code:not={ACME}|"), case("Observation?code:missing=false")]
    # R4 :text searches CodeableConcept.text, Coding.display and Identifier.type.text
    for v in ["body", "BODY WÉIGHT", "body weight (obs", "glucose", "poids", "weight", "ёлка", "unclass",
              "glucose [mass", "glucose [moles"]:
        out.append(case(f"Observation?code:text={v}"))
    for v in ["vital-signs", f"{CATEGORY}|laboratory", "vital-signs,laboratory", "|laboratory"]:
        out.append(case(f"Observation?category={v}"))
    out += [case("Observation?category:missing=true"), case("Observation?category:not=laboratory"),
            case("Observation?status=final"), case("Observation?status=final,amended"),
            case("Observation?status:not=final")]
    for v in [f"{ACT_CODE}|AMB", "IMP", "|IMP", "EMER,VR", f"{ACT_CODE}|"]:
        out.append(case(f"Encounter?class={v}"))
    out += [case("Encounter?type=185349003"), case(f"Encounter?type={SNOMED}|270427003"),
            case("Encounter?type:missing=true"), case("Encounter?status=finished"),
            case("Encounter?status:not=finished"), case("ValueSet?status=draft")]
    out += [case("Patient?_id={P0}"), case("Patient?_id={P0},{P1},{P44}"), case("Observation?_id={O5}"),
            case("Patient?_id={O5}"), case("Patient?_id:not={P0}")]
    return out


def _dates() -> list:
    out = []
    for v in ["1980", "1980-03", "1980-03-15", "1979-12-31", "1981-01-01", "2000-02-29", "2000", "1980-02-29",
              "1980-03-15T12:00:00Z", "2024-05-03"]:
        out += [case(f"Patient?birthdate={p}{v}") for p in DATE_PREFIXES]
    for v in ["2024-05-03", "2024-05-04", "2024-05-03T23:30:00-05:00", "2024-05-04T04:30:00Z", "2024-05", "2024",
              "2023-12-31", "2024-01-01", "2024-05-03T10:00:00.250Z", "2024-05-03T10:00:00Z",
              "2023-12-31T23:00:00Z", "2024-05-03T22:00:00-02:00", "2024-05-04T00:00:00Z"]:
        out += [case(f"Patient?death-date={p}{v}") for p in DATE_PREFIXES]
    for v in ["2024-05-03", "2024-05-03T10:00:00Z", "2024-05-03T08:00:00Z", "2024-05-03T10:00:00+02:00", "2024-05",
              "2024", "2024-05-02", "2024-05-04", "2023-12-31", "2024-05-03T09:00:00Z", "2024-05-03T08:00:00.5Z",
              "2024-05-03T10:00:00.123+02:00", "2024-05-02T23:59:59.999Z", "2024-01-01", "2024-06-15T02:30:00Z",
              "2024-05-03T10:00:00"]:
        out += [case(f"Observation?date={p}{v}") for p in DATE_PREFIXES]
    for v in ["2024-05-03", "2024-05", "2024-05-02", "2024-05-04", "2024", "2023-12-31", "2024-05-03T09:00:00Z",
              "2024-05-03T12:00:00+14:00", "2024-05-01"]:
        out += [case(f"Encounter?date={p}{v}") for p in DATE_PREFIXES]
    out += [case(f"RiskAssessment?date={p}2024-05-03") for p in DATE_PREFIXES]
    out += [case("Observation?date:missing=true"), case("Observation?date:missing=false"),
            case("Patient?birthdate:missing=true"), case("Encounter?date:missing=true"),
            case("Patient?birthdate=1980,2000"), case("Patient?birthdate=lt1980,gt2000"),
            case("Patient?birthdate=ge1980&birthdate=lt1981"), case("Observation?date=ge2024-05-03&date=le2024-05-03"),
            case("Observation?date=ap2024-05-03"), case("Patient?birthdate=ap1980"),
            case("Encounter?date=ap2024-05")]
    for v in ["{lu:P10}", "{lus:P10}", "{lutz:P10}", "{lu:O0}", "{lu:V9}", "2000-01-01", "2999"]:
        out += [case(f"Patient?_lastUpdated={p}{v}") for p in ["", "ne", "gt", "lt", "ge", "le", "sa", "eb"]]
    out += [case("Observation?_lastUpdated=ge{lu:O10}&_lastUpdated=le{lu:O20}")]
    return out


def _numbers() -> list:
    out = []
    for v in ["0.25", "0.3", "0.35", "0.5", "0", "1", "0.250", "0.2", "0.05", "0.30", "100", "0.1"]:
        out += [case(f"RiskAssessment?probability={p}{v}") for p in DATE_PREFIXES]
    out += [case("RiskAssessment?probability=gt-1"), case("RiskAssessment?probability=ge0.0"),
            case("RiskAssessment?probability=-0"), case("RiskAssessment?probability=ap0.3"),
            case("RiskAssessment?probability=ap0.5"),
            case("RiskAssessment?probability:missing=true"), case("RiskAssessment?probability=0.25,0.5"),
            case("RiskAssessment?probability=gt0.2&probability=lt0.3")]
    return out


def _quantities() -> list:
    out = []
    # UCUM-canonical comparison keeps the precision of the value as searched (5 kg: [4.5, 5.5) kg)
    for v in [f"5|{UCUM}|g", f"5|{UCUM}|mg", f"5000|{UCUM}|mg", f"0.005|{UCUM}|kg", f"5|{UCUM}|kg", f"5.4|{UCUM}|g",
              f"5.40|{UCUM}|g", f"4.5|{UCUM}|g", f"5.5|{UCUM}|g", f"72.5|{UCUM}|kg", f"72500|{UCUM}|g",
              f"5.2|{UCUM}|kg", f"5450|{UCUM}|mg"]:
        out += [case(f"Observation?value-quantity={p}{v}") for p in ORDER_PREFIXES]
    out += [case(f"Observation?value-quantity={p}5|{UCUM}|g") for p in ["sa", "eb", "ap"]]
    out += [case(f"Observation?value-quantity={p}5||mg") for p in ["ne", "gt", "lt", "ge", "le"]]
    out += [case(f"Observation?value-quantity={p}5") for p in ["ne", "gt", "lt", "ge", "le"]]
    # R4: value-quantity=5.4||mg matches "either the code (code) or the stated human unit (unit)"
    for v in ["5||mg", "5||milligram", "5000||mg", "5||g", "72||kilo", "5.4||mmol/L", "5", "gt5000",
              "5|http://acme.org/units|mg", f"5.4|{UCUM}|mmol/L", f"5400|{UCUM}|umol/L", f"0.0054|{UCUM}|mol/L",
              f"97|{UCUM}|mg/dL", f"1|{UCUM}|g/L", f"gt0.9|{UCUM}|g/L", f"5.4|{UCUM}|mg", "le5||gram"]:
        out.append(case(f"Observation?value-quantity={v}"))
    out += [case("Observation?value-quantity:missing=true"), case("Observation?value-quantity:missing=false"),
            case(f"Observation?value-quantity=5|{UCUM}|g,5.4|{UCUM}|mmol/L"),
            case(f"Observation?value-quantity=5|{UCUM}|"),
            case(f"Observation?value-quantity=gt4|{UCUM}|g&value-quantity=lt6000|{UCUM}|mg")]
    for v in [f"1|{UCUM}|h", f"90|{UCUM}|min", f"1.5|{UCUM}|h", f"60|{UCUM}|min", f"2|{UCUM}|d", f"0.5|{UCUM}|h"]:
        out += [case(f"Encounter?length={p}{v}") for p in ORDER_PREFIXES]
    out.append(case("Encounter?length:missing=true"))
    return out


def _busiest(type: str, element: str, target: str, n: int) -> list[str]:
    """Labels of the ``target`` resources most referenced by ``type.element`` in the data set."""
    counts = Counter(r[element]["reference"].split("/")[1] for _, r in DATASET.items
                     if r["resourceType"] == type and r.get(element, {}).get("reference", "").startswith(target + "/"))
    return [label for label, _ in counts.most_common(n)]


def _references() -> list:
    p1, p2 = _busiest("Observation", "subject", "Patient", 2)
    [g1] = _busiest("Observation", "subject", "Group", 1)
    e1, e2 = _busiest("Observation", "encounter", "Encounter", 2)
    r1, r2 = _busiest("RiskAssessment", "subject", "Patient", 2)
    [q1] = _busiest("Encounter", "subject", "Patient", 1)
    return [case(f"Observation?subject=Patient/{{{p1}}}"), case(f"Observation?subject={{{p1}}}"),
            case(f"Observation?subject:Patient={{{p1}}}"), case(f"Observation?subject:Group={{{g1}}}"),
            case(f"Observation?subject={{{g1}}}"), case(f"Observation?subject=Group/{{{g1}}}"),
            case(f"Observation?patient={{{p2}}}"), case(f"Observation?patient=Patient/{{{p2}}}"),
            case(f"Observation?patient={{{g1}}}"), case(f"Observation?subject=Patient/{{{p1}}},Patient/{{{p2}}}"),
            case(f"Observation?subject={{{p1}}},{{{g1}}}"), case(f"Observation?subject=Group/{{{p1}}}"),
            case("Observation?subject:missing=true"), case("Observation?subject:missing=false"),
            case("Observation?patient:missing=true"),
            case(f"Observation?subject:identifier={MRN}|1001"), case("Observation?subject:identifier=1001"),
            case("Observation?subject:identifier=|1001"), case(f"Observation?subject:identifier={SSN}|"),
            case(f"Observation?encounter=Encounter/{{{e1}}}"), case(f"Observation?encounter={{{e2}}}"),
            case("Observation?encounter:missing=true"),
            case(f"Encounter?subject={{{q1}}}"), case(f"Encounter?patient=Patient/{{{q1}}}"),
            case("Encounter?subject:Group={G0}"), case("Encounter?subject:missing=false"),
            case(f"RiskAssessment?patient={{{r1}}}"), case(f"RiskAssessment?subject=Patient/{{{r1}}},Patient/{{{r2}}}")]


def _uris() -> list:
    out = [case(f"ValueSet?url={u}") for u in ["http://acme.org/fhir/ValueSet/a", "http://acme.org/fhir/ValueSet/A",
                                               "http://acme.org/fhir", "http://acme.org/fhir/", "urn:oid:1.2.3"]]
    out += [case(f"ValueSet?url:below={u}") for u in ["http://acme.org/fhir", "http://acme.org/fhir/",
                                                      "http://acme.org/fhir/ValueSet/a", "http://acme.org/",
                                                      "urn:oid:1.2.3", "http://other.org", "http://acme.org"]]
    out += [case(f"ValueSet?url:above={u}") for u in ["http://acme.org/fhir/ValueSet/a/b/c",
                                                      "http://acme.org/fhir/ValueSet/ab", "http://acme.org/fhir/x",
                                                      "urn:oid:1.2.3.4.5", "http://other.org/fhir/ValueSet/a"]]
    out += [case("ValueSet?url:missing=true"), case("ValueSet?url=urn:oid:1.2.3,urn:oid:1.2.3.4")]
    return out


def _combinations() -> list:
    return [
        case("Patient?family=müller&gender=female"), case("Patient?name=ann&name=anna"),
        case("Patient?given=jo&given=él"), case("Patient?identifier=1001&identifier:not=|1001"),
        case("Patient?address-city=zur&active=true"), case("Patient?gender=female,male&birthdate=1980"),
        case("Patient?family=smith,müller"), case("Patient?family:exact=Smith,MULLER"),
        case("Patient?name=елкин&death-date:missing=false"), case("Patient?gender:not=male&birthdate=ge2000"),
        case(f"Observation?code={LOINC}|29463-7&value-quantity=gt5|{UCUM}|g&date=ge2024-05"),
        case("Observation?status=final,amended&category=vital-signs"),
        case("Observation?code=29463-7&subject:missing=true"),
        case(f"Observation?code:not={LOINC}|29463-7&value-quantity:missing=false"),
        case("Encounter?status=finished&date=ge2024-05-03"),
        case("Encounter?class=AMB,EMER&length=gt30|" + UCUM + "|min"),
    ]


CASES = _strings() + _tokens() + _dates() + _numbers() + _quantities() + _references() + _uris() + _combinations()


@pytest.mark.parametrize("query,known", CASES)
async def test_search_matches_the_oracle(request, world, query, known):  # noqa: F811
    expect_known(request, world, known)
    await check_matches(world, query)


PAGED = ["Patient?name=a", "Patient?birthdate=ge1980", "Observation?code=29463-7", "Observation?date=le2024-05-03",
         "Encounter?status:not=cancelled", "Patient?gender:not=female", "Observation?value-quantity=gt4|" + UCUM + "|g",
         "Observation?patient.gender=female", "Patient?_has:Observation:patient:status=final"]


@pytest.mark.parametrize("query", PAGED)
async def test_paging_returns_every_match_once(world, query):  # noqa: F811
    """With a small ``_count``, following ``next`` links yields the oracle's matches, each once."""
    type, items = parse(query)
    expected = world.oracle.search(type, items)
    entries = await world.search(type, [*items, ("_count", "3")])
    got = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    assert len(got) == len(set(got))
    assert expected.admits(set(got))
