"""Write-time search index extraction over the R4 SearchParameters."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from fhir_server.search import composite
from fhir_server.search import extract as extract_module
from fhir_server.search.emit import emit_profile
from fhir_server.search.extract import extract, fallbacks
from fhir_server.search.fhirpath_compile import Unsupported, compile_expression
from fhir_server.search.normalize import date_range, fold
from fhir_server.search.params import element_types, param, params_for, resource_types
from fhir_server.search.values import DATE_MAX, DATE_MIN, IndexValues

SYNTHEA = Path(__file__).resolve().parents[3].parent / "shared/datasets/synthea-10-patients"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def rows(values: list[tuple], code: str) -> list[tuple]:
    return [row[1:] for row in values if row[0] == code]


def observation(**fields: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body Weight"}], "text": "Body wéight"},
        "subject": {"reference": "Patient/p1"},
        **fields,
    }


def test_observation_code_value_quantity_period_and_subject() -> None:
    index = extract(
        observation(
            valueQuantity={"value": 72.5, "unit": "kg", "system": UCUM, "code": "kg"},
            effectivePeriod={"start": "2024-05-03T10:00:00+02:00", "end": "2024-05-03"},
            encounter={"reference": "Encounter/e1"},
        )
    )
    # the coding with its display, and the concept's own text in a row of its own (both searched by :text)
    assert rows(index.tokens, "code") == [(LOINC, "29463-7", "body weight"), (None, None, "body weight")]
    assert rows(index.tokens, "status") == [(None, "final", None)]
    assert rows(index.quantities, "value-quantity") == [(Decimal("72.5"), UCUM, "kg", Decimal("72500"), "g")]
    assert rows(index.dates, "date") == [("2024-05-03T08:00:00.000000Z", "2024-05-03T23:59:59.999999Z")]
    assert rows(index.references, "subject") == [("Patient/p1",)]
    assert rows(index.references, "patient") == [("Patient/p1",)]
    assert rows(index.references, "encounter") == [("Encounter/e1",)]
    assert rows(index.tokens, "combo-code") == [(LOINC, "29463-7", "body weight"), (None, None, "body weight")]


def test_observation_components_and_value_choices() -> None:
    index = extract(
        observation(
            effectiveDateTime="2024-05-03T10:15",
            valueCodeableConcept={"text": "Positive"},
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
                },
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueString": "n/a"},
            ],
        )
    )
    assert rows(index.dates, "date") == [("2024-05-03T10:15:00.000000Z", "2024-05-03T10:15:59.999999Z")]
    assert rows(index.tokens, "value-concept") == [(None, None, "positive")]
    assert rows(index.strings, "value-string") == [("positive", "Positive")]
    assert {r[1] for r in rows(index.tokens, "component-code")} == {"8480-6", "8462-4"}
    (quantity,) = rows(index.quantities, "component-value-quantity")
    assert quantity[:3] == (Decimal("120"), UCUM, "mm[Hg]")
    assert rows(index.quantities, "value-quantity") == []


def test_patient_name_birthdate_identifier_telecom_address() -> None:
    index = extract(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "M-1", "type": {"text": "Medical Record Number"}}],
            "name": [{"family": "Müller", "given": ["Zoë", "Anne"], "prefix": ["Dr."]}],
            "telecom": [
                {"system": "phone", "value": "+41 44 555 12 12"},
                {"system": "email", "value": "zoe@example.org"},
            ],
            "gender": "female",
            "birthDate": "1980-02",
            "address": [{"line": ["Bahnhofstrasse  1"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
        }
    )
    assert rows(index.tokens, "identifier") == [("urn:mrn", "M-1", "medical record number")]
    assert rows(index.tokens, "phone") == [(None, "+41 44 555 12 12", None)]
    assert rows(index.tokens, "email") == [(None, "zoe@example.org", None)]
    assert len(rows(index.tokens, "telecom")) == 2
    assert rows(index.tokens, "gender") == [(None, "female", None)]
    assert rows(index.strings, "family") == [("muller", "Müller")]
    assert rows(index.strings, "given") == [("zoe", "Zoë"), ("anne", "Anne")]
    assert ("dr.", "Dr.") in rows(index.strings, "name")
    assert rows(index.strings, "address-city") == [("zurich", "Zürich")]
    assert ("bahnhofstrasse 1", "Bahnhofstrasse  1") in rows(index.strings, "address")
    assert rows(index.dates, "birthdate") == [("1980-02-01T00:00:00.000000Z", "1980-02-29T23:59:59.999999Z")]


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [
        ("2024", "2024-01-01T00:00:00.000000Z", "2024-12-31T23:59:59.999999Z"),
        ("2023-02", "2023-02-01T00:00:00.000000Z", "2023-02-28T23:59:59.999999Z"),
        ("2024-05-03", "2024-05-03T00:00:00.000000Z", "2024-05-03T23:59:59.999999Z"),
        ("2024-05-03T10:15:30", "2024-05-03T10:15:30.000000Z", "2024-05-03T10:15:30.999999Z"),
        ("2024-05-03T10:15:30.12Z", "2024-05-03T10:15:30.120000Z", "2024-05-03T10:15:30.129999Z"),
        ("2024-05-03T01:15:30+02:00", "2024-05-02T23:15:30.000000Z", "2024-05-02T23:15:30.999999Z"),
        ("2024-12-31T23:30:00-05:00", "2025-01-01T04:30:00.000000Z", "2025-01-01T04:30:00.999999Z"),
    ],
)
def test_date_precision_ranges_in_utc(value: str, lo: str, hi: str) -> None:
    assert date_range(value) == (lo, hi)


@pytest.mark.parametrize("value", ["2024-13", "2023-02-29", "2024-05-03T24:00:00Z", "yesterday"])
def test_invalid_dates_are_not_indexed(value: str) -> None:
    assert date_range(value) is None
    assert rows(extract({"resourceType": "Patient", "birthDate": value}).dates, "birthdate") == []


def test_open_period_ends_and_timing_events() -> None:
    open_end = extract({"resourceType": "Encounter", "period": {"start": "2024-05-03"}})
    assert rows(open_end.dates, "date") == [("2024-05-03T00:00:00.000000Z", DATE_MAX)]
    open_start = extract({"resourceType": "Encounter", "period": {"end": "2024"}})
    assert rows(open_start.dates, "date") == [(DATE_MIN, "2024-12-31T23:59:59.999999Z")]
    timing = extract(observation(effectiveTiming={"event": ["2024-05-03", "2024-05-01T10:00:00Z"]}))
    assert rows(timing.dates, "date") == [("2024-05-01T10:00:00.000000Z", "2024-05-03T23:59:59.999999Z")]


def test_versioned_reference_and_resolve_is_patient() -> None:
    versioned = extract(observation(subject={"reference": "Patient/p1/_history/3"}))
    assert rows(versioned.references, "patient") == [("Patient/p1",)]
    group = extract(observation(subject={"reference": "Group/g1"}))
    assert rows(group.references, "subject") == [("Group/g1",)]
    assert rows(group.references, "patient") == []
    absolute = extract(observation(subject={"reference": "https://other.example/fhir/Patient/9"}))
    assert rows(absolute.references, "patient") == [("https://other.example/fhir/Patient/9",)]


def test_contained_and_conditional_references_are_not_stored() -> None:
    index = extract(
        observation(
            subject={"reference": "#p"},
            performer=[
                {"reference": "Practitioner?identifier=urn:npi|1"},
                {"identifier": {"system": "urn:npi", "value": "2"}},
            ],
        )
    )
    assert index.references == [] or all(code == "_profile" for code, _ in index.references)
    assert rows(index.tokens, "performer:identifier") == [("urn:npi", "2", None)]


def test_canonical_with_version_is_stored_with_and_without_it() -> None:
    response = extract({"resourceType": "QuestionnaireResponse", "questionnaire": "http://x.org/Questionnaire/q|2.0"})
    assert set(rows(response.references, "questionnaire")) == {
        ("http://x.org/Questionnaire/q|2.0",),
        ("http://x.org/Questionnaire/q",),
    }
    profiled = extract({"resourceType": "Patient", "meta": {"profile": ["http://x.org/StructureDefinition/p|1"]}})
    assert rows(profiled.uris, "_profile") == [("http://x.org/StructureDefinition/p|1",)]
    assert ("http://x.org/StructureDefinition/p",) in rows(profiled.references, "_profile")


def test_meta_tag_security_and_source() -> None:
    meta = {
        "tag": [{"system": "urn:t", "code": "a"}],
        "security": [{"system": "urn:s", "code": "R"}],
        "source": "urn:src",
    }
    index = extract({"resourceType": "Basic", "meta": meta, "id": "b", "text": {"div": "<div/>"}})
    assert rows(index.tokens, "_tag") == [("urn:t", "a", None)]
    assert rows(index.tokens, "_security") == [("urn:s", "R", None)]
    assert rows(index.uris, "_source") == [("urn:src",)]
    assert not any(row[0] in ("_id", "_lastUpdated", "_text") for row in index.tokens + index.strings)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("5", "mg"), ("0.005", "g")),
        (("100", "mg/dL"), ("1", "g/L")),
        (("5.5", "mmol/L"), ("0.0055", "mol/L")),
        (("37", "Cel"), ("98.6", "[degF]")),
        (("72", "/min"), ("72", "{beats}/min")),
        (("2", "h"), ("120", "min")),
        (("1000", "mL"), ("1", "L")),
    ],
)
def test_quantities_in_commensurable_units_share_a_canonical_form(a: tuple, b: tuple) -> None:
    def canonical(value: str, code: str) -> tuple:
        quantity = {"value": float(value), "system": UCUM, "code": code}
        (row,) = rows(extract(observation(valueQuantity=quantity)).quantities, "value-quantity")
        return row[3], row[4]

    assert canonical(*a) == canonical(*b)


def test_non_ucum_quantity_keeps_its_code_as_canonical_and_is_found_by_its_human_unit_too() -> None:
    quantity = {"value": 3, "unit": "tablets", "system": "http://example.org/units", "code": "TAB"}
    assert rows(extract(observation(valueQuantity=quantity)).quantities, "value-quantity") == [
        (Decimal(3), "http://example.org/units", "TAB", Decimal(3), "TAB"),
        (Decimal(3), "http://example.org/units", "tablets", Decimal(3), "TAB"),
    ]


def test_numbers_are_exact_decimals() -> None:
    index = extract({"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.1}]})
    assert rows(index.numbers, "probability") == [(Decimal("0.1"),)]


def test_boolean_tokens() -> None:
    active = extract({"resourceType": "Patient", "active": True, "deceasedBoolean": False})
    assert rows(active.tokens, "active") == [(None, "true", None)]
    assert rows(active.tokens, "deceased") == [(None, "false", None)]
    died = extract({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"})
    assert rows(died.tokens, "deceased") == [(None, "true", None)]
    assert rows(died.dates, "death-date") == [("2020-01-01T00:00:00.000000Z", "2020-01-01T23:59:59.999999Z")]


def test_rows_are_deduplicated_and_unknown_types_give_nothing() -> None:
    index = extract(observation(category=[{"coding": [{"system": "s", "code": "c"}]}] * 2))
    assert rows(index.tokens, "category") == [("s", "c", None)]
    assert extract({"resourceType": "NotAType", "code": "x"}) == IndexValues()


def test_fold_drops_accents_case_and_extra_whitespace() -> None:
    assert fold("  Ærø  CAFÉ\tstraße ") == "ærø cafe strasse"


def test_every_resource_type_has_its_search_params() -> None:
    types = resource_types()
    assert len(types) == 146 and {"Patient", "Observation", "Task", "Bundle"} <= types
    counts = {t: len(params_for(t)) for t in types}
    assert all(n >= 8 for n in counts.values())  # at least the Resource-level params
    assert {"code", "patient", "subject", "value-quantity", "date", "_tag", "combo-code-value-quantity"} <= set(
        params_for("Observation")
    )
    # R4's own (47 and 32) plus our implementation guide's _compartment
    assert counts["Observation"] == 48 and counts["Patient"] == 33
    assert param("Observation", "_compartment").expression == "Observation.subject | Observation.performer"
    patient = param("Observation", "patient")
    assert patient is not None and patient.type == "reference" and patient.target == ("Patient",)
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert (
        param("AllergyIntolerance", "code").expression
        == "AllergyIntolerance.code | AllergyIntolerance.reaction.substance"
    )
    composite = param("Observation", "code-value-quantity")
    assert composite.type == "composite" and [e for _, e in composite.components] == ["code", "value.as(Quantity)"]


def test_no_search_param_falls_back_to_fhirpathpy() -> None:
    assert {t: fallbacks(t) for t in resource_types() if fallbacks(t)} == {}


def composite_rows(index: IndexValues, code: str) -> dict[int, dict[int, list[tuple]]]:
    """element -> component -> rows, of composite ``code``."""
    out: dict[int, dict[int, list[tuple]]] = {}
    for name, element, component, _kind, row in index.composites:
        if name == code:
            out.setdefault(element, {}).setdefault(component, []).append(row)
    return out


def blood_pressure(systolic: float, diastolic: float) -> dict:
    mm = {"system": UCUM, "code": "mm[Hg]", "unit": "mmHg"}
    return observation(
        code={"coding": [{"system": LOINC, "code": "85354-9"}]},
        component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": systolic, **mm}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": diastolic, **mm}},
        ],
    )


def test_composite_rows_keep_each_component_value_with_its_own_element() -> None:
    index = extract(blood_pressure(150, 80))
    bp = composite_rows(index, "component-code-value-quantity")
    assert sorted(bp) == [0, 1]
    assert bp[0][0] == [(LOINC, "8480-6")] and bp[1][0] == [(LOINC, "8462-4")]
    # the quantity as its own parameter stores it: by code, and again by the differing human unit
    assert bp[0][1] + bp[1][1] == rows(index.quantities, "component-value-quantity")
    assert [q[:3] for q in bp[0][1]] == [(Decimal("150"), UCUM, "mm[Hg]"), (Decimal("150"), UCUM, "mmHg")]
    assert [q[:3] for q in bp[1][1]] == [(Decimal("80"), UCUM, "mm[Hg]"), (Decimal("80"), UCUM, "mmHg")]
    # the panel itself has no value; combo-* is answered from these rows, not stored again
    assert composite_rows(index, "code-value-quantity") == {}
    assert composite_rows(index, "combo-code-value-quantity") == {}
    assert {kind for p, _, _, kind, _ in index.composites if p == "component-code-value-quantity"} == {"token",
                                                                                                     "quantity"}


def test_composite_element_without_every_component_gives_no_rows() -> None:
    index = extract(observation(component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueString": "n/a"},
        {"code": {"text": "no coding"}, "valueQuantity": {"value": 1}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 2}},
    ]))
    rows = composite_rows(index, "component-code-value-quantity")
    assert list(rows) == [2] and rows[2][0] == [(LOINC, "8462-4")]  # elements keep their position's number
    assert rows[2][1] == [(Decimal("2"), None, None, Decimal("2"), None)]


def test_code_value_composites_on_the_observation_itself() -> None:
    code = {"coding": [{"system": LOINC, "code": "29463-7"}, {"system": "urn:local", "code": "wt"}], "text": "Weight"}
    quantity = extract(observation(code=code, valueQuantity={"value": 5, "system": UCUM, "code": "g"}))
    rows = composite_rows(quantity, "code-value-quantity")
    assert rows[0][0] == [(LOINC, "29463-7"), ("urn:local", "wt")]  # the concept's text is no token row here
    assert rows[0][1] == [(Decimal("5"), UCUM, "g", Decimal("5"), "g")]
    concept = extract(observation(valueCodeableConcept={"coding": [{"system": "urn:v", "code": "pos"}],
                                                        "text": "Positive"}))
    assert composite_rows(concept, "code-value-concept")[0][1] == [("urn:v", "pos")]
    period = extract(observation(valuePeriod={"start": "2024-05-03", "end": "2024-05"}))
    assert composite_rows(period, "code-value-date")[0][1] == [("2024-05-03T00:00:00.000000Z",
                                                               "2024-05-31T23:59:59.999999Z")]
    text = extract(observation(valueString="Pösitive"))
    assert composite_rows(text, "code-value-string")[0][1] == [("positive",)]


def test_composites_read_resource_level_components_and_the_fixed_r4_definitions() -> None:
    sequence = extract({"resourceType": "MolecularSequence", "coordinateSystem": 0,
                        "referenceSeq": {"chromosome": {"coding": [{"system": "urn:chr", "code": "1"}]},
                                         "windowStart": 10, "windowEnd": 20},
                        "variant": [{"start": 12, "end": 13}, {"start": 15}]})
    # ``%resource.referenceSeq.chromosome`` is the resource's, for each variant; the second lacks an end
    assert composite_rows(sequence, "chromosome-variant-coordinate") == {
        0: {0: [("urn:chr", "1")], 1: [(Decimal("12"),)], 2: [(Decimal("13"),)]}}
    assert composite_rows(sequence, "chromosome-window-coordinate")[0][2] == [(Decimal("20"),)]
    # R4 gives relationship's component expressions swapped: relatesto is the target, relation the code
    document = extract({"resourceType": "DocumentReference", "status": "current", "content": [],
                        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/d0"}}]})
    assert composite_rows(document, "relationship") == {0: {0: [("DocumentReference/d0",)],
                                                            1: [(None, "replaces")]}}
    context = extract({"resourceType": "ValueSet", "status": "draft", "useContext": [
        {"code": {"system": "urn:ctx", "code": "age"}, "valueQuantity": {"value": 18, "code": "a"}},
        {"code": {"system": "urn:ctx", "code": "focus"}, "valueCodeableConcept": {"coding": [{"code": "x"}]}}]})
    assert composite_rows(context, "context-type-quantity") == {0: {0: [("urn:ctx", "age")],
                                                                    1: [(Decimal("18"), None, "a", Decimal("18"),
                                                                         "a")]}}
    assert composite_rows(context, "context-type-value") == {1: {0: [("urn:ctx", "focus")], 1: [(None, "x")]}}


def test_every_composite_compiles_with_an_indexable_branch_per_component() -> None:
    plans = {(t, code): bases for t in resource_types() for code, bases in composite.plan(t)}
    composites = {(t, c) for t in resource_types() for c, p in params_for(t).items() if p.type == "composite"}
    unions = {(t, c): composite.stored_as(t, c) for t, c in composites if composite.stored_as(t, c) != (c,)}
    assert unions == {
        ("Observation", "combo-code-value-quantity"): ("code-value-quantity", "component-code-value-quantity"),
        ("Observation", "combo-code-value-concept"): ("code-value-concept", "component-code-value-concept"),
    }
    assert set(plans) == composites - set(unions) and len(composites) == 72
    assert all(composite.supported(t, c) for t, c in composites)
    for (t, code), bases in plans.items():
        for _base, components in bases:
            assert all(c.branches for c in components), (t, code)


def run(expression: str, resource: dict) -> list[tuple[str, list]]:
    branches = compile_expression(expression, resource["resourceType"], element_types)
    return [(b.type, found) for b in branches if (found := b.run([resource]))]


def test_compiler_handles_extensions_choices_and_filters() -> None:
    patient = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": "http://x.org/race",
                "valueCoding": {"code": "a"},
                "extension": [{"url": "text", "valueString": "T"}],
            },
            {"url": "http://x.org/other", "valueString": "s"},
        ],
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "e@x.org"}],
    }
    assert run("Patient.extension('http://x.org/race').value", patient) == [("Coding", [{"code": "a"}])]
    assert run("Patient.extension.where(url='http://x.org/race').value.ofType(Coding).code", patient) == [
        ("code", ["a"])
    ]
    assert run("Patient.extension('http://x.org/race').extension('text').value", patient) == [("string", ["T"])]
    assert run("Patient.extension('http://x.org/none').exists()", patient) == [("boolean", [False])]
    assert run("Patient.telecom.where(system='email').value", patient) == [("string", ["e@x.org"])]
    assert run("(Patient.telecom.value)[1] | Patient.gender", patient) == [("string", ["e@x.org"])]


@pytest.mark.parametrize(
    "expression", ["%resource.name", "Patient.name.where(family.startsWith('M'))", "Patient.name +"]
)
def test_compiler_refuses_what_it_does_not_support(expression: str) -> None:
    with pytest.raises(Unsupported):
        compile_expression(expression, "Patient", element_types)


def test_fhirpathpy_fallback_resolves_reference_types() -> None:
    fallback = extract_module._fhirpathpy("Observation.subject.where(resolve() is Patient)")
    assert fallback([observation()]) == [{"reference": "Patient/p1"}]
    assert fallback([observation(subject={"reference": "Group/g"})]) == []
    index = IndexValues()
    for value in extract_module._fhirpathpy("Patient.name.where(family.startsWith('M'))")(
        [{"resourceType": "Patient", "name": [{"family": "Mo"}]}]
    ):
        extract_module._untyped("string")(index, "name", value)
    assert index.strings == [("name", "mo", "Mo")]


HANDMADE = [
    {
        "resourceType": "Patient",
        "active": True,
        "deceasedBoolean": False,
        "telecom": [{"system": "phone", "value": "1"}],
        "identifier": [{"system": "urn:mrn", "value": "M-1", "type": {"text": "MRN"}}],
        "link": [{"other": {"reference": "Patient/2"}}],
    },
    observation(
        effectiveInstant="2024-01-01T00:00:00Z",
        valueDateTime="2024",
        subject={"reference": "Group/1"},
        component=[{"code": {"coding": [{"code": "c"}]}, "valueCodeableConcept": {"coding": [{"code": "v"}]}}],
    ),
    {
        "resourceType": "Condition",
        "onsetPeriod": {"start": "2020"},
        "abatementAge": {"value": 5, "system": UCUM, "code": "a"},
    },
    {
        "resourceType": "MedicationRequest",
        "medicationReference": {"reference": "Medication/m"},
        "authoredOn": "2024-05-03T10:00:00+05:30",
    },
    {
        "resourceType": "Appointment",
        "participant": [{"actor": {"reference": "Patient/p"}}, {"actor": {"reference": "Location/l"}}],
    },
    {"resourceType": "ConceptMap", "sourceUri": "http://a", "targetCanonical": "http://b|2"},
    {
        "resourceType": "Group",
        "characteristic": [{"code": {"coding": [{"code": "c"}]}, "valueBoolean": True}],
        "actual": True,
    },
    {
        "resourceType": "PlanDefinition",
        "relatedArtifact": [
            {"type": "depends-on", "resource": "http://lib|1"},
            {"type": "composed-of", "resource": "http://x"},
        ],
    },
    {
        "resourceType": "Person",
        "link": [{"target": {"reference": "Patient/p"}}, {"target": {"reference": "RelatedPerson/r"}}],
    },
    {"resourceType": "Claim", "total": {"value": 10.5, "currency": "USD"}, "patient": {"reference": "Patient/p"}},
    {
        "resourceType": "CarePlan",
        "activity": [{"detail": {"scheduledTiming": {"repeat": {"boundsPeriod": {"start": "2024-01-01"}}}}}],
    },
    {"resourceType": "Encounter", "length": {"value": 30, "system": UCUM, "code": "min"}},
]


def _synthea() -> list[dict]:
    if not SYNTHEA.is_dir():
        pytest.skip(f"{SYNTHEA} is missing")
    return [
        orjson.loads(line) for f in sorted(SYNTHEA.glob("*.ndjson")) if f.name != "log.ndjson" for line in f.open("rb")
    ]


def test_synthea_dataset_extracts_known_values() -> None:
    resources = _synthea()
    indexes = [(r, extract(r)) for r in resources]
    assert len(indexes) > 7000
    patients = [(r, i) for r, i in indexes if r["resourceType"] == "Patient"]
    for patient, index in patients:
        family = patient["name"][0]["family"]
        assert (family.lower(), family) in rows(index.strings, "family")
        assert rows(index.dates, "birthdate")[0][0].startswith(patient["birthDate"])
    encounters = [(r, i) for r, i in indexes if r["resourceType"] == "Encounter"]
    for encounter, index in encounters:
        assert rows(index.references, "patient") == [(encounter["subject"]["reference"],)]
        assert not any("?" in target for _, target in index.references)  # conditional refs are resolved first
    conditions = [i for r, i in indexes if r["resourceType"] == "Condition"]
    assert all(rows(i.tokens, "code") and rows(i.dates, "onset-date") for i in conditions)


def test_compiled_walkers_agree_with_fhirpathpy() -> None:
    resources = _synthea()
    samples = [r for i, r in enumerate(resources) if i % 25 == 0]
    samples += HANDMADE
    compiled: dict[tuple[str, str], object] = {}
    for resource in samples:
        expected = IndexValues()
        for code, p in params_for(resource["resourceType"]).items():
            if code in extract_module.SKIPPED or p.type in ("composite", "special") or not p.expression:
                continue
            key = (resource["resourceType"], code)
            run = compiled.get(key) or compiled.setdefault(key, extract_module._fhirpathpy(p.expression))
            emit = emit_profile if code == "_profile" else extract_module._untyped(p.type)
            for value in run([resource]):
                emit(expected, code, value)
        actual = extract(resource)
        for name in IndexValues.__slots__:
            if name != "composites":  # fhirpathpy has no composite rows to compare (see the composite tests)
                assert set(getattr(actual, name)) == set(getattr(expected, name)), (resource["resourceType"], name)
