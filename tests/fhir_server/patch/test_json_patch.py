"""JSON Patch engine: HL7's json-patch-tests.json plus our own error/immutability cases."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch.json_patch import apply_json_patch

CASES = json.loads((pathlib.Path(__file__).parent / "data" / "json_patch_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["comment"] for c in CASES])
def test_hl7_case(case):
    doc = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(OperationOutcomeError) as exc:
            apply_json_patch(doc, case["patch"])
        assert exc.value.status == 422
        assert exc.value.issues[0]["code"] == "processing"
        assert exc.value.issues[0]["expression"] == ["Patch[0]"]
    else:
        assert apply_json_patch(doc, case["patch"]) == case["expected"]
    assert doc == case["doc"], "input mutated"


def _error(resource, ops) -> OperationOutcomeError:
    with pytest.raises(OperationOutcomeError) as exc:
        apply_json_patch(resource, ops)
    return exc.value


PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Jane"]}], "active": True}


def test_returns_new_dict_and_never_mutates():
    before = copy.deepcopy(PATIENT)
    ops = [{"op": "add", "path": "/name/0/given/-", "value": "Ann"},
           {"op": "replace", "path": "/active", "value": False},
           {"op": "remove", "path": "/name/0/family"}]
    out = apply_json_patch(PATIENT, ops)
    assert out == {"resourceType": "Patient", "id": "p1", "name": [{"given": ["Jane", "Ann"]}], "active": False}
    assert PATIENT == before
    assert out["name"] is not PATIENT["name"]


def test_failure_midway_leaves_input_untouched():
    before = copy.deepcopy(PATIENT)
    err = _error(PATIENT, [{"op": "replace", "path": "/active", "value": False},
                           {"op": "remove", "path": "/birthDate"}])
    assert err.status == 422 and err.issues[0]["expression"] == ["Patch[1]"]
    assert "/birthDate" in err.issues[0]["diagnostics"]
    assert PATIENT == before


@pytest.mark.parametrize("body", [{"op": "add"}, "add", None, 3])
def test_patch_document_must_be_an_array(body):
    err = _error(PATIENT, body)
    assert (err.status, err.issues[0]["code"], err.issues[0]["expression"]) == (400, "invalid", ["Patch"])


@pytest.mark.parametrize("op, why", [
    ("nope", "not an object"),
    ({"op": "frobnicate", "path": "/a"}, "unknown op"),
    ({"path": "/a", "value": 1}, "missing op"),
    ({"op": "add", "value": 1}, "missing path"),
    ({"op": "add", "path": "/a"}, "missing value"),
    ({"op": "replace", "path": "/active"}, "missing value"),
    ({"op": "test", "path": "/active"}, "missing value"),
    ({"op": "move", "path": "/a"}, "missing from"),
    ({"op": "copy", "from": 3, "path": "/a"}, "from not a string"),
    ({"op": "remove", "path": "active"}, "pointer without leading slash"),
    ({"op": "remove", "path": 7}, "path not a string"),
    ({"op": "move", "from": "/name", "path": "/name/0"}, "move into own child"),
])
def test_malformed_operation_is_400_naming_the_operation(op, why):
    err = _error(PATIENT, [{"op": "test", "path": "/id", "value": "p1"}, {"op": "test", "path": "/id", "value": "p1"}, op])
    assert err.status == 400, why
    assert err.issues[0]["code"] == "invalid"
    assert err.issues[0]["expression"] == ["Patch[2]"]


@pytest.mark.parametrize("op", [
    {"op": "remove", "path": "/birthDate"},
    {"op": "replace", "path": "/name/3/family", "value": "X"},
    {"op": "add", "path": "/name/5", "value": {}},
    {"op": "add", "path": "/contact/0/name", "value": {}},
    {"op": "move", "from": "/nothing", "path": "/x"},
    {"op": "copy", "from": "/name/9", "path": "/x"},
    {"op": "test", "path": "/active", "value": False},
    {"op": "test", "path": "/missing", "value": 1},
])
def test_unappliable_operation_is_422_processing(op):
    err = _error(PATIENT, [op])
    assert (err.status, err.issues[0]["code"], err.issues[0]["expression"]) == (422, "processing", ["Patch[0]"])
    assert op["path"] in err.issues[0]["diagnostics"]


@pytest.mark.parametrize("actual, expected", [(True, 1), (1, True), (0, False), ("1", 1), (None, 0)])
def test_test_op_is_type_strict(actual, expected):
    err = _error({"resourceType": "Basic", "x": actual}, [{"op": "test", "path": "/x", "value": expected}])
    assert err.status == 422


def test_test_op_numbers_compare_by_value():
    doc = {"resourceType": "Observation", "valueQuantity": {"value": 1.0}}
    assert apply_json_patch(doc, [{"op": "test", "path": "/valueQuantity", "value": {"value": 1}}]) == doc


def test_id_and_resource_type_changes_are_left_to_the_caller():
    out = apply_json_patch(PATIENT, [{"op": "replace", "path": "/id", "value": "other"}])
    assert out["id"] == "other"


def test_empty_patch_is_a_copy():
    out = apply_json_patch(PATIENT, [])
    assert out == PATIENT and out is not PATIENT


def test_patch_values_are_not_shared_with_the_output():
    ops = [{"op": "add", "path": "/contact", "value": [{"name": {"text": "a"}}]},
           {"op": "replace", "path": "/contact/0/name/text", "value": "b"}]
    before = copy.deepcopy(ops)
    out = apply_json_patch(PATIENT, ops)
    assert out["contact"] == [{"name": {"text": "b"}}]
    assert ops == before
