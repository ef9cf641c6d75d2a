"""FHIRPath Patch engine: HL7's fhir-patch-tests (converted to JSON) plus our own cases."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch

CASES = json.loads((pathlib.Path(__file__).parent / "data" / "fhirpath_patch_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hl7_case(case):
    resource, diff = copy.deepcopy(case["input"]), copy.deepcopy(case["diff"])
    if "error" in case:
        with pytest.raises(OperationOutcomeError) as exc:
            apply_fhirpath_patch(resource, diff)
        assert exc.value.status == 422
        assert exc.value.issues[0]["code"] == "processing"
        assert case["error"] in exc.value.issues[0]["diagnostics"]
    else:
        assert apply_fhirpath_patch(resource, diff) == case["output"]
    assert resource == case["input"] and diff == case["diff"], "input mutated"


# --------------------------------------------------------------------------- helpers
def op(type_, path, **parts) -> dict:
    """One operation parameter; ``value`` may be a (value[x] key, value) pair or a list of parts."""
    out = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    if "name" in parts:
        out.append({"name": "name", "valueString": parts.pop("name")})
    for key in ("index", "source", "destination"):
        if key in parts:
            out.append({"name": key, "valueInteger": parts.pop(key)})
    if "value" in parts:
        value = parts.pop("value")
        if isinstance(value, list):
            out.append({"name": "value", "part": value})
        elif isinstance(value, dict):
            out.append({"name": "value", **value})
        else:
            out.append({"name": "value", value[0]: value[1]})
    assert not parts
    return {"name": "operation", "part": out}


def patch(resource: dict, *ops: dict) -> dict:
    before = copy.deepcopy(resource)
    params = {"resourceType": "Parameters", "parameter": list(ops)}
    params_before = copy.deepcopy(params)
    out = apply_fhirpath_patch(resource, params)
    assert resource == before and params == params_before, "input mutated"
    return out


def error(resource: dict, *ops: dict, params: dict | None = None) -> OperationOutcomeError:
    with pytest.raises(OperationOutcomeError) as exc:
        apply_fhirpath_patch(resource, params if params is not None else {"resourceType": "Parameters", "parameter": list(ops)})
    return exc.value


def where(err: OperationOutcomeError) -> tuple[int, str, list]:
    return err.status, err.issues[0]["code"], err.issues[0].get("expression")


PATIENT = {
    "resourceType": "Patient", "id": "p1",
    "identifier": [{"use": "official", "system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}],
    "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Ann"], "_given": [None, {"id": "g2"}]},
             {"use": "nickname", "given": ["JD"]}],
    "birthDate": "1980-01-01",
    "_birthDate": {"extension": [{"url": "http://x/time", "valueDateTime": "1980-01-01T10:00:00Z"}]},
    "deceasedBoolean": False,
    "extension": [{"url": "http://x/a", "valueString": "a"}, {"url": "http://x/b", "valueInteger": 2}],
}


# --------------------------------------------------------------------------- behaviour
def test_output_is_independent_of_the_parameters():
    value = {"valueCodeableConcept": {"text": "married"}}
    params = {"resourceType": "Parameters", "parameter": [op("add", "Patient", name="maritalStatus", value=value)]}
    out = apply_fhirpath_patch(PATIENT, params)
    out["maritalStatus"]["text"] = "changed"
    assert params["parameter"][0]["part"][3]["valueCodeableConcept"]["text"] == "married"


def test_where_filter_and_primitive_types_are_kept():
    out = patch(PATIENT, op("replace", "Patient.identifier.where(system = 'urn:b').value", value=("valueString", "9")),
                op("add", "Patient", name="multipleBirthInteger", value=("valueInteger", 2)),
                op("add", "Patient", name="active", value=("valueBoolean", True)))
    assert out["identifier"][1]["value"] == "9"
    assert out["multipleBirthInteger"] == 2 and out["active"] is True


def test_choice_element_by_fhirpath_name():
    out = patch(PATIENT, op("replace", "Patient.deceased", value=("valueDateTime", "2020-01-01")))
    assert "deceasedBoolean" not in out and out["deceasedDateTime"] == "2020-01-01"
    out = patch(out, op("delete", "Patient.deceased"))
    assert not any(k.startswith("deceased") for k in out)
    out = patch(out, op("add", "Patient", name="deceased", value=("valueBoolean", True)))
    assert out["deceasedBoolean"] is True


def test_choice_add_when_another_type_exists_is_422():
    err = error(PATIENT, op("add", "Patient", name="deceased", value=("valueDateTime", "2020")))
    assert where(err) == (422, "processing", ["Parameters.parameter[0]"])


def test_extension_function_and_ofType():
    out = patch(PATIENT, op("replace", "Patient.extension('http://x/b').value", value=("valueInteger", 3)),
                op("delete", "Patient.extension.where(url = 'http://x/a')"),
                op("replace", "Patient.extension.value.ofType(integer)", value=("valueInteger", 4)))
    assert out["extension"] == [{"url": "http://x/b", "valueInteger": 4}]


def test_primitive_extensions_follow_their_value():
    out = patch(PATIENT, op("delete", "Patient.name[0].given[0]"))
    assert out["name"][0]["given"] == ["Ann"] and out["name"][0]["_given"] == [{"id": "g2"}]
    out = patch(PATIENT, op("delete", "Patient.name[0].given[1]"))
    assert out["name"][0]["given"] == ["Jane"] and "_given" not in out["name"][0]
    out = patch(PATIENT, op("move", "Patient.name[0].given", source=1, destination=0))
    assert out["name"][0]["given"] == ["Ann", "Jane"] and out["name"][0]["_given"] == [{"id": "g2"}, None]
    out = patch(PATIENT, op("insert", "Patient.name[0].given", index=0, value=("valueString", "X")))
    assert out["name"][0]["given"] == ["X", "Jane", "Ann"] and out["name"][0]["_given"] == [None, None, {"id": "g2"}]
    out = patch(PATIENT, op("replace", "Patient.birthDate", value=("valueDate", "1981-02-02")))
    assert out["birthDate"] == "1981-02-02" and out["_birthDate"] == PATIENT["_birthDate"]


def test_extension_on_a_primitive():
    out = patch(PATIENT, op("delete", "Patient.birthDate.extension('http://x/time')"))
    assert out["birthDate"] == "1980-01-01" and "_birthDate" not in out
    out = patch(out, op("add", "Patient.birthDate", name="extension",
                        value=[{"name": "url", "valueUri": "http://x/t2"}, {"name": "value", "valueString": "v"}]))
    assert out["_birthDate"] == {"extension": [{"url": "http://x/t2", "valueString": "v"}]}


def test_anonymous_value_uses_r4_cardinality():
    out = patch({"resourceType": "Patient"}, op("add", "Patient", name="contact", value=[
        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
        {"name": "name", "part": [{"name": "family", "valueString": "Roe"}, {"name": "given", "valueString": "R"}]},
        {"name": "gender", "valueCode": "other"}]))
    assert out == {"resourceType": "Patient", "contact": [
        {"telecom": [{"system": "phone", "value": "1"}], "name": {"family": "Roe", "given": ["R"]}, "gender": "other"}]}


def test_insert_into_absent_list_at_zero():
    out = patch({"resourceType": "Patient"}, op("insert", "Patient.identifier", index=0, value=("valueIdentifier", {"value": "1"})))
    assert out == {"resourceType": "Patient", "identifier": [{"value": "1"}]}


def test_delete_nothing_is_a_no_op():
    assert patch(PATIENT, op("delete", "Patient.maritalStatus")) == PATIENT
    assert patch(PATIENT, op("delete", "Patient.name.where(use = 'temp')")) == PATIENT


def test_paths_outside_the_locator_subset_fall_back_to_fhirpathpy():
    out = patch(PATIENT, op("replace", "(Patient.name | Patient.contact.name).where(use = 'nickname')",
                            value=("valueHumanName", {"text": "JD"})))
    assert out["name"][1] == {"text": "JD"}
    out = patch(PATIENT, op("delete", "Patient.identifier.select($this).where(value = '2')"))
    assert out["identifier"] == PATIENT["identifier"][:1]


def test_delete_prunes_emptied_parents():
    out = patch({"resourceType": "Patient", "contact": [{"name": {"text": "x"}}]}, op("delete", "Patient.contact.name.text"))
    assert out == {"resourceType": "Patient"}


def test_operations_apply_in_order_on_previous_result():
    out = patch(PATIENT, op("add", "Patient", name="name", value=("valueHumanName", {"text": "new"})),
                op("move", "Patient.name", source=2, destination=0),
                op("replace", "Patient.name[0].text", value=("valueString", "first")))
    assert [n.get("text") for n in out["name"]] == ["first", None, None]


def test_empty_parameters_is_a_copy():
    out = patch(PATIENT)
    assert out == PATIENT and out is not PATIENT


# --------------------------------------------------------------------------- 422 errors
@pytest.mark.parametrize("bad, fragment", [
    (op("replace", "Patient.maritalStatus", value=("valueString", "x")), "No content found"),
    (op("replace", "Patient.name.given", value=("valueString", "x")), "selects 3 elements"),
    (op("delete", "Patient.identifier"), "selects 2 elements"),
    (op("add", "Patient", name="birthDate", value=("valueDate", "2000-01-01")), "already has a value"),
    (op("add", "Patient", name="favouriteColour", value=("valueString", "red")), "no element"),
    (op("add", "Patient", name="maritalStatus", value=("valueString", "married")), "cannot hold"),
    (op("replace", "Patient.name[0]", value=("valueString", "x")), "cannot hold"),
    (op("add", "Patient.identifier.where(use = 'temp')", name="value", value=("valueString", "x")), "No content found"),
    (op("insert", "Patient.identifier", index=3, value=("valueIdentifier", {})), "out of range"),
    (op("insert", "Patient.birthDate", index=0, value=("valueDate", "2000")), "not select a list"),
    (op("move", "Patient.identifier", source=0, destination=2), "out of range"),
    (op("move", "Patient.identifier", source=-1, destination=0), "out of range"),
    (op("move", "Patient.contact", source=0, destination=0), "No content found"),
    (op("delete", "Patient"), "cannot be deleted"),
    (op("replace", "Patient.name.count()", value=("valueInteger", 1)), "not an element"),
    (op("add", "Patient.birthDate", name="family", value=("valueString", "x")), "primitive"),
    (op("add", "Patient", name="deceased", value=[{"name": "x", "valueString": "y"}]), "choice"),
    (op("add", "Patient", name="contact", value=[{"name": "gender", "valueCode": "male"},
                                                  {"name": "gender", "valueCode": "female"}]), "does not repeat"),
])
def test_unappliable_operation_is_422(bad, fragment):
    err = error(PATIENT, op("delete", "Patient.nothing"), bad)
    assert where(err) == (422, "processing", ["Parameters.parameter[1]"])
    assert fragment in err.issues[0]["diagnostics"]


# --------------------------------------------------------------------------- 400 errors
def P(*parts):
    return {"name": "operation", "part": list(parts)}


T_ADD, PATH = {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"}


@pytest.mark.parametrize("params, expression", [
    ({"resourceType": "Patient"}, "Parameters"),
    ([], "Parameters"),
    ({"resourceType": "Parameters", "parameter": {}}, "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]}, "Parameters.parameter[0].name"),
    ({"resourceType": "Parameters", "parameter": [{"name": "operation"}]}, "Parameters.parameter[0].part"),
    ({"resourceType": "Parameters", "parameter": [P(PATH)]}, "Parameters.parameter[0].part"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD)]}, "Parameters.parameter[0].part"),
    ({"resourceType": "Parameters", "parameter": [P({"name": "type", "valueCode": "upsert"}, PATH)]}, "Parameters.parameter[0].part[0]"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, PATH, {"name": "value", "valueString": "x"})]}, "Parameters.parameter[0].part"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, PATH, {"name": "name", "valueString": "gender"})]}, "Parameters.parameter[0].part"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, PATH, {"name": "colour", "valueString": "x"})]}, "Parameters.parameter[0].part[2].name"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, PATH, PATH)]}, "Parameters.parameter[0].part[2]"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, {"name": "path", "valueString": ""})]}, "Parameters.parameter[0].part[1]"),
    ({"resourceType": "Parameters", "parameter": [P(T_ADD, PATH, {"name": "name", "valueString": "gender"},
                                                    {"name": "value"})]}, "Parameters.parameter[0].part[3]"),
    ({"resourceType": "Parameters", "parameter": [P({"name": "type", "valueCode": "insert"}, PATH, {"name": "index", "valueString": "1"},
                                                    {"name": "value", "valueString": "x"})]}, "Parameters.parameter[0].part[2]"),
    ({"resourceType": "Parameters", "parameter": [P({"name": "type", "valueCode": "delete"},
                                                    {"name": "path", "valueString": "Patient.name.where("})]}, "Parameters.parameter[0].part[1]"),
    ({"resourceType": "Parameters", "parameter": [P({"name": "type", "valueCode": "delete"},
                                                    {"name": "path", "valueString": "Patient name"})]}, "Parameters.parameter[0].part[1]"),
])
def test_malformed_parameters_is_400(params, expression):
    err = error(PATIENT, params=params)
    assert where(err) == (400, "invalid", [expression])


def test_second_operation_is_named():
    err = error(PATIENT, op("delete", "Patient.nothing"), P({"name": "type", "valueCode": "delete"}))
    assert where(err) == (400, "invalid", ["Parameters.parameter[1].part"])


# --------------------------------------------------------------------------- nested structures
def test_where_on_primitives_and_keyword_members():
    out = patch(PATIENT, op("replace", "Patient.name.given.where($this = 'JD')", value=("valueString", "Jay")))
    assert out["name"][1]["given"] == ["Jay"]
    res = {"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div>"}}
    out = patch(res, op("replace", "Patient.text.`div`", value=("valueString", "<div xmlns=\"http://www.w3.org/1999/xhtml\">b</div>")))
    assert out["text"]["div"].endswith(">b</div>")


def test_contained_and_bundle_resources():
    org = {"resourceType": "Organization", "id": "o1", "name": "Acme"}
    out = patch({"resourceType": "Patient"}, op("add", "Patient", name="contained", value={"resource": org}),
                op("replace", "Patient.contained.ofType(Organization).name", value=("valueString", "Acme2")))
    assert out["contained"] == [{**org, "name": "Acme2"}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": org}, {"resource": PATIENT}]}
    out = patch(bundle, op("delete", "Bundle.entry.resource.ofType(Patient).name.where(use = 'nickname')"),
                op("add", "Bundle.entry[0].resource", name="alias", value=("valueString", "A")))
    assert out["entry"][1]["resource"]["name"] == PATIENT["name"][:1]
    assert out["entry"][0]["resource"]["alias"] == ["A"]


def test_content_reference_elements():
    q = {"resourceType": "Questionnaire", "status": "draft",
         "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}]}
    out = patch(q, op("add", "Questionnaire.item[0].item.where(linkId = '1.1')", name="item",
                      value=[{"name": "linkId", "valueString": "1.1.1"}, {"name": "type", "valueCode": "string"},
                             {"name": "code", "valueCoding": {"code": "c"}}]))
    assert out["item"][0]["item"][0]["item"] == [{"linkId": "1.1.1", "type": "string", "code": [{"code": "c"}]}]


def test_observation_value_choice_inside_backbone():
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
           "component": [{"code": {"text": "sys"}, "valueQuantity": {"value": 120, "unit": "mmHg"}},
                         {"code": {"text": "dia"}, "valueQuantity": {"value": 80, "unit": "mmHg"}}]}
    out = patch(obs, op("replace", "Observation.component.where(code.text = 'dia').value.value", value=("valueDecimal", 85.5)),
                op("replace", "Observation.component.where(value.value > 100).value", value=("valueString", "high")))
    assert out["component"][1]["valueQuantity"]["value"] == 85.5
    assert out["component"][0] == {"code": {"text": "sys"}, "valueString": "high"}


def test_large_where_is_fast_enough():
    import time
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": {"resourceType": "Basic", "id": str(i)}} for i in range(300)]}
    start = time.perf_counter()
    out = patch(bundle, op("delete", "Bundle.entry.where(fullUrl = 'urn:uuid:150')"))
    assert len(out["entry"]) == 299 and time.perf_counter() - start < 5


def test_descendants_fall_back_to_the_whole_expression():
    out = patch(PATIENT, op("replace", "Patient.descendants().where($this is HumanName and use = 'nickname')",
                            value=("valueHumanName", {"text": "t"})))
    assert out["name"][1] == {"text": "t"}


@pytest.mark.parametrize("path, value", [
    ("Patient.identifier[0].value", ("valueBoolean", True)),
    ("Patient.deceased", ("valueInteger", 1)),
    ("Patient.birthDate", ("valueInteger", 1980)),
])
def test_primitive_json_kind_must_match(path, value):
    err = error(PATIENT, op("replace", path, value=value))
    assert where(err)[:2] == (422, "processing") and "cannot hold" in err.issues[0]["diagnostics"]
