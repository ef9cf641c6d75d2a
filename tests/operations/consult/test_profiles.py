"""The published artifacts: valid FHIR R4, and the ones the CapabilityStatement names exist."""

from __future__ import annotations

import json

import pytest

from fhir_server.capability import OPERATIONS
from fhir_server.write import accept
from operations.parameters import PROFILES, definition, parse
from profiles import CANONICAL

ARTIFACTS = sorted(p.name for p in PROFILES.glob("*.json")
                   if p.name.startswith(("codesystem-", "operationdefinition-")))


@pytest.mark.parametrize("name", ARTIFACTS)
def test_each_artifact_is_valid_fhir(name):
    resource = json.loads((PROFILES / name).read_text())
    accept(resource, None, 64)
    assert resource["url"] == f"{CANONICAL}/{resource['resourceType']}/{resource['id']}"


def test_every_operation_in_the_capability_statement_has_its_definition():
    for type, ops in OPERATIONS.items():
        for op in ops:
            if not op["definition"].startswith(CANONICAL):  # HL7's own (Subscriptions backport)
                assert op["definition"].startswith("http://hl7.org/fhir/uv/subscriptions-backport/"), op
                continue
            d = definition(f"{type.lower()}-{op['name']}")
            assert (d["url"], d["code"], d["resource"]) == (op["definition"], op["name"], [type])


def test_a_value_of_the_wrong_type_is_refused():
    body = {"resourceType": "Parameters", "parameter": [{"name": "comment", "valueInteger": 1}]}
    with pytest.raises(Exception) as e:
        parse(definition("task-request-info"), body)
    assert e.value.status == 400 and e.value.issues[0]["expression"] == ["Parameters.parameter[0]"]
