"""Write-path structural validation (fhir_server.validation.structure)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.validation import structure
from fhir_server.validation.reference_check import comparable, reference_errors, reference_valid
from fhir_server.validation.structure import resource_types, validate

SHARED = Path(__file__).resolve().parents[4] / "shared"
SYNTHEA = SHARED / "datasets" / "synthea-10-patients"

OBSERVATION = {
    "resourceType": "Observation",
    "id": "bp-1",
    "meta": {"versionId": "1", "lastUpdated": "2024-03-01T10:15:00.000Z"},
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood pressure"},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-03-01T10:00:00+01:00",
    "issued": "2024-03-01T10:00:00.123+01:00",
    "performer": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999977794"}],
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 82, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 121.5, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    ],
}

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "extension": [{"url": "http://example.org/ext", "extension": [
        {"url": "a", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
        {"url": "b", "valueString": "White"}]}],
    "active": True,
    "name": [{"use": "official", "family": "Doe", "given": ["Jane", None],
              "_given": [None, {"extension": [{"url": "http://example.org/nick", "valueString": "JJ"}]}]}],
    "gender": "female",
    "birthDate": "1980-02-29",
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                  "valueDateTime": "1980-02-29T08:30:00-05:00"}]},
    "deceasedBoolean": False,
    "multipleBirthInteger": 2,
    "contained": [{"resourceType": "Organization", "id": "org", "name": "ACME"}],
    "managingOrganization": {"reference": "#org"},
    "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
}

VALID = [
    OBSERVATION,
    PATIENT,
    {"resourceType": "Questionnaire", "status": "active", "item": [
        {"linkId": "1", "type": "group", "item": [
            {"linkId": "1.1", "type": "choice", "answerOption": [{"valueCoding": {"code": "y"}}],
             "enableWhen": [{"question": "0", "operator": "exists", "answerBoolean": True}],
             "item": [{"linkId": "1.1.1", "type": "string", "maxLength": 20}]}]}]},
    {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8c6a3f0e-0a5b-4d1c-9f1e-2b3c4d5e6f70",
         "resource": {"resourceType": "Patient", "name": [{"family": "X"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "preliminary", "code": {"text": "t"},
                      "subject": {"reference": "urn:uuid:8c6a3f0e-0a5b-4d1c-9f1e-2b3c4d5e6f70"}},
         "request": {"method": "PUT", "url": "Observation/o1", "ifMatch": 'W/"1"'}},
        {"request": {"method": "DELETE", "url": "Patient?identifier=a|b"}}]},
    {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "active": False}},
        {"name": "count", "valueInteger": 3},
        {"name": "part", "part": [{"name": "x", "valueDecimal": -1.5e3}]}]},
    {"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
     "for": {"reference": "Patient/p1"}, "authoredOn": "2024-01-02",
     "restriction": {"repetitions": 1, "period": {"start": "2024-01-02T00:00:00Z"}},
     "input": [{"type": {"text": "x"}, "valueBase64Binary": "aGVs bG8="}]},
    {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
     "subject": {"reference": "Patient/p1"}, "code": {"text": "consult"},
     "quantityQuantity": {"value": 1, "comparator": "<"},
     "occurrenceTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00"]}}},
    {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
     "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/p1"},
     "dispenseRequest": {"quantity": {"value": 30, "unit": "tab"}, "numberOfRepeatsAllowed": 0}},
    {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
]


def _issues(resource, **kw) -> list[dict]:
    with pytest.raises(OperationOutcomeError) as info:
        validate(resource, **kw)
    assert info.value.status == 422
    return info.value.issues


def _pairs(resource, **kw) -> set[tuple[str, str]]:
    return {(i["code"], i.get("expression", [""])[0]) for i in _issues(resource, **kw)}


# ------------------------------------------------------------------ valid input


@pytest.mark.parametrize("resource", VALID, ids=lambda r: r["resourceType"])
def test_hand_made_resources_are_valid(resource):
    validate(resource)


def _synthea_files():
    return sorted(p for p in SYNTHEA.glob("*.ndjson") if p.name != "log.ndjson") if SYNTHEA.is_dir() else []


@pytest.mark.skipif(not _synthea_files(), reason="synthea dataset not available")
@pytest.mark.parametrize("path", _synthea_files(), ids=lambda p: p.name.split(".")[0])
def test_synthea_resources_are_valid(path):
    failures = []
    with open(path, "rb") as f:
        for line in f:
            resource = json.loads(line)
            try:
                validate(resource)
            except OperationOutcomeError as exc:
                failures.append((resource.get("id"), exc.issues[:3]))
    assert not failures, failures[:5]


def test_resource_types():
    types = resource_types()
    assert {"Patient", "Observation", "Bundle", "Parameters", "MedicinalProduct"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource", "SubscriptionStatus"} & types
    assert len(types) == 146  # R4 4.0.1


# ------------------------------------------------------------------ invalid input

CASES = {
    "unknown element at depth": (
        {"resourceType": "Patient", "contact": [{"name": {"family": "x", "foo": 1}}]},
        {("structure", "Patient.contact[0].name.foo")}),
    "medplum-only Meta elements are not R4": (
        {"resourceType": "Patient", "meta": {"project": "x", "versionId": "1"}},
        {("structure", "Patient.meta.project")}),
    "bad date": (
        {"resourceType": "Patient", "birthDate": "1980-13-01"}, {("value", "Patient.birthDate")}),
    "date not in calendar": (
        {"resourceType": "Patient", "birthDate": "2021-02-29"}, {("value", "Patient.birthDate")}),
    "dateTime with time needs zone": (
        {**OBSERVATION, "effectiveDateTime": "2024-03-01T10:00:00"}, {("value", "Observation.effectiveDateTime")}),
    "two choice variants": (
        {**OBSERVATION, "valueString": "a", "valueQuantity": {"value": 1}}, {("structure", "Observation.value")}),
    "decimal as string": (
        {**OBSERVATION, "valueQuantity": {"value": "1.0"}}, {("structure", "Observation.valueQuantity.value")}),
    "missing Observation.status": (
        {k: v for k, v in OBSERVATION.items() if k != "status"}, {("required", "Observation.status")}),
    "missing required choice": (
        {"resourceType": "Questionnaire", "status": "draft", "item": [
            {"linkId": "1", "type": "string", "enableWhen": [{"question": "q", "operator": "="}]}]},
        {("required", "Questionnaire.item[0].enableWhen[0].answer")}),
    "bad Patient.gender code": (
        {"resourceType": "Patient", "gender": "F"}, {("code-invalid", "Patient.gender")}),
    "bad Task status and intent": (
        {"resourceType": "Task", "status": "open", "intent": "wish"},
        {("code-invalid", "Task.status"), ("code-invalid", "Task.intent")}),
    "empty array": ({"resourceType": "Patient", "name": []}, {("structure", "Patient.name")}),
    "empty object": ({"resourceType": "Patient", "maritalStatus": {}}, {("structure", "Patient.maritalStatus")}),
    "object with only an id": (
        {"resourceType": "Patient", "maritalStatus": {"id": "x"}}, {("structure", "Patient.maritalStatus")}),
    "empty string": ({"resourceType": "Patient", "name": [{"given": ["a", ""]}]}, {("value", "Patient.name[0].given[1]")}),
    "null without _given": (
        {"resourceType": "Patient", "name": [{"given": ["a", None]}]}, {("structure", "Patient.name[0].given[1]")}),
    "_given extension error": (
        {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, {"extension": [{"valueString": "x"}]}]}]},
        {("required", "Patient.name[0].given[1].extension[0].url")}),
    "_given misaligned": (
        {"resourceType": "Patient", "name": [{"given": ["a"], "_given": [None, {"id": "x", "extension": [{"url": "u", "valueCode": "c"}]}]}]},
        {("structure", "Patient.name[0].given")}),
    "_birthDate not an object": ({"resourceType": "Patient", "_birthDate": "x"}, {("structure", "Patient.birthDate")}),
    "unknown _element": ({"resourceType": "Patient", "_name": {"id": "x"}}, {("structure", "Patient._name")}),
    "array for a single value": ({"resourceType": "Patient", "gender": ["male"]}, {("structure", "Patient.gender")}),
    "object for an array": ({"resourceType": "Patient", "name": {"family": "x"}}, {("structure", "Patient.name")}),
    "boolean as string": ({"resourceType": "Patient", "active": "true"}, {("structure", "Patient.active")}),
    "integer as float": ({"resourceType": "Patient", "multipleBirthInteger": 1.5}, {("structure", "Patient.multipleBirthInteger")}),
    "positiveInt range": (
        {"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "string", "maxLength": 2**31}]},
        {("value", "Questionnaire.item[0].maxLength")}),
    "bad id": ({"resourceType": "Patient", "id": "a b"}, {("value", "Patient.id")}),
    "bad base64": ({"resourceType": "Binary", "contentType": "x/y", "data": "abc"}, {("value", "Binary.data")}),
    "extension without url": (
        {"resourceType": "Patient", "modifierExtension": [{"valueBoolean": True}]},
        {("required", "Patient.modifierExtension[0].url")}),
    "SimpleQuantity has no comparator": (
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "medicationCodeableConcept": {"text": "x"},
         "subject": {"reference": "Patient/1"}, "dispenseRequest": {"quantity": {"value": 1, "comparator": "<"}}},
        {("structure", "MedicationRequest.dispenseRequest.quantity.comparator")}),
    "contained resource error": (
        {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"},
                                                  {"resourceType": "Observation", "code": {"text": "x"}, "status": "done"}]},
        {("code-invalid", "Patient.contained[1].status")}),
    "contained without resourceType": ({"resourceType": "Patient", "contained": [{"id": "x"}]}, {("required", "Patient.contained[0]")}),
    "bundle entry resource": (
        {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient"}}, {"request": {"method": "GET", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "code": {"text": "x"}}, "request": {"method": "POST", "url": "Observation"}}]},
        {("required", "Bundle.entry[2].resource.status")}),
    "bundle HTTP verb": (
        {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "FETCH", "url": "x"}}]},
        {("code-invalid", "Bundle.entry[0].request.method")}),
    "unknown nested resourceType": (
        {"resourceType": "Parameters", "parameter": [{"name": "r", "resource": {"resourceType": "Foo"}}]},
        {("structure", "Parameters.parameter[0].resource")}),
    "resourceType inside a datatype": (
        {"resourceType": "Patient", "maritalStatus": {"resourceType": "CodeableConcept", "text": "x"}},
        {("structure", "Patient.maritalStatus.resourceType")}),
    "missing resourceType": ({"id": "x"}, {("required", "resourceType")}),
    "unknown resourceType": ({"resourceType": "Patients"}, {("structure", "resourceType")}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_invalid_resources_report_code_and_expression(name):
    resource, expected = CASES[name]
    assert _pairs(resource) == expected


def test_all_issues_in_one_error():
    bad = {"resourceType": "Patient", "gender": "x", "birthDate": "yesterday", "foo": 1,
           "name": [{"given": ["ok", 5]}], "contained": [{"resourceType": "Patient", "bar": {}}]}
    assert _pairs(bad) == {
        ("code-invalid", "Patient.gender"), ("value", "Patient.birthDate"), ("structure", "Patient.foo"),
        ("structure", "Patient.name[0].given[1]"), ("structure", "Patient.contained[0].bar")}


def test_issue_cap():
    issues = _issues({"resourceType": "Patient", **{f"x{i}": 1 for i in range(200)}})
    assert len(issues) == structure.MAX_ISSUES + 1
    assert issues[-1]["code"] == "too-costly" and issues[-1]["severity"] == "warning"


def _nested_items(levels: int) -> dict:
    item = {"linkId": "leaf", "type": "display"}
    for i in range(levels):
        item = {"linkId": str(i), "type": "group", "item": [item]}
    return {"resourceType": "Questionnaire", "status": "draft", "item": [item]}


def test_nesting_depth_limit():
    validate(_nested_items(60))  # 62 object levels
    issues = _issues(_nested_items(70))
    assert [i["code"] for i in issues] == ["too-costly"]
    assert "deeper than 64" in issues[0]["diagnostics"]
    assert issues[0]["expression"][0].startswith("Questionnaire.item[0].item[0].item[0]")
    with pytest.raises(OperationOutcomeError):
        validate(_nested_items(10), max_depth=8)
    validate(_nested_items(70), max_depth=100)


def test_deep_extension_nesting():
    ext: dict = {"url": "u", "valueString": "x"}
    for _ in range(100):
        ext = {"url": "u", "extension": [ext]}
    issues = _issues({"resourceType": "Patient", "extension": [ext]})
    assert issues[0]["code"] == "too-costly"


def test_not_an_object_is_400():
    with pytest.raises(OperationOutcomeError) as info:
        validate([{"resourceType": "Patient"}])
    assert info.value.status == 400


def test_input_not_modified():
    resource = copy.deepcopy(PATIENT)
    validate(resource)
    assert resource == PATIENT


# ------------------------------------------------------------------ generated table


@pytest.mark.skipif(not (SHARED / "fhir-r4").is_dir(), reason="FHIR definitions not available")
def test_generated_table_is_up_to_date(tmp_path):
    from fhir_server.validation import _generate_structure as gen

    out = tmp_path / "t.json.gz"
    gen.write(gen.generate(SHARED / "fhir-r4"), out)
    raw = gzip.decompress(out.read_bytes())
    assert raw == gzip.decompress(structure.TABLE.read_bytes()), "regenerate: python -m fhir_server.validation._generate_structure"
    table = json.loads(raw)
    assert table["types"]["Questionnaire.item"]["elements"]["item"]["contentRef"] == "Questionnaire.item"
    assert table["types"]["Observation"]["elements"]["status"]["binding"] == [
        "amended", "cancelled", "corrected", "entered-in-error", "final", "preliminary", "registered", "unknown"]


# ------------------------------------------------------------------ cross-check with fhir.resources R4B


def _mutations(resource: dict):
    """(name, mutated copy) pairs that fhir.resources R4B also rejects."""
    t = structure._compiled()[0][resource["resourceType"]]

    def mutated(fn):
        r = copy.deepcopy(resource)
        fn(r)
        return r

    yield "unknown top element", mutated(lambda r: r.__setitem__("bogusElement", "x"))
    yield "bad id", mutated(lambda r: r.__setitem__("id", "has space"))
    yield "bad instant", mutated(lambda r: r.__setitem__("meta", {"lastUpdated": "2020-01-01"}))
    yield "array for single", mutated(lambda r: r.__setitem__("meta", [{"versionId": "1"}]))
    yield "unknown nested element", mutated(lambda r: r.__setitem__("meta", {"versionId": "1", "bogus": 1}))
    if "extension" in t.elems:
        yield "object for array", mutated(lambda r: r.__setitem__("extension", {"url": "http://x", "valueString": "y"}))
        yield "extension without url", mutated(lambda r: r.__setitem__("extension", [{"valueString": "y"}]))
        yield "two value[x]", mutated(lambda r: r.__setitem__("extension", [{"url": "http://x", "valueString": "a", "valueBoolean": True}]))
        yield "bad date", mutated(lambda r: r.__setitem__("extension", [{"url": "http://x", "valueDate": "2020-13-01"}]))
        yield "number for string", mutated(lambda r: r.__setitem__("extension", [{"url": "http://x", "valueString": 5}]))
    if "contained" in t.elems:
        yield "bad contained", mutated(lambda r: r.__setitem__("contained", [{"resourceType": "Patient", "bogus": 1}]))
    for name in sorted(t.required):
        if name in resource:
            yield f"missing {name}", mutated(lambda r: r.pop(name))


def _cross_check_corpus() -> list[dict]:
    corpus = [copy.deepcopy(r) for r in VALID]
    for path in _synthea_files():
        with open(path, "rb") as f:
            corpus.extend(json.loads(line) for _, line in zip(range(3), f))
    return corpus


def test_cross_check_with_fhir_resources_r4b():
    disagreements, compared = [], 0
    for resource in _cross_check_corpus():
        cases = [("valid", resource), *_mutations(resource)]
        for name, r in cases:
            ref = reference_valid(r)
            if ref is None:
                continue
            compared += 1
            try:
                validate(r)
                ours = True
            except OperationOutcomeError as exc:
                ours, why = False, exc.issues
            if ours != ref:
                detail = reference_errors(r) if not ref else why
                disagreements.append((r["resourceType"], name, ours, ref, str(detail)[:300]))
    assert compared >= 100
    assert not disagreements, disagreements


def test_reference_check_skips_r4_only_content():
    assert reference_valid({"resourceType": "MedicinalProduct"}) is None
    assert not comparable({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "EffectEvidenceSynthesis"}}]})
    assert not comparable({"resourceType": "Patient", "extension": [{"url": "u", "valueMeta": {"versionId": "1"}}]})
    assert reference_valid(OBSERVATION) is True
