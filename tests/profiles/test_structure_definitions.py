"""The published StructureDefinitions and ValueSets: valid FHIR R4, snapshots that agree with
their hand-written differentials, and files equal to what the generator writes."""

from __future__ import annotations

import json

import pytest

from fhir_server.write import accept
from profiles import CANONICAL, PROFILES, _differentials
from profiles import _generate_snapshots as generator

SDS = sorted(p.name for p in PROFILES.glob("structuredefinition-*.json"))
VALUE_SETS = sorted(p.name for p in PROFILES.glob("valueset-*.json"))
PROFILE_NAMES = ["TelemedRequest", "ConsultTask", "ConsultConclusion", "ConsultProtocol", "ConsultMessage"]


def load(name: str) -> dict:
    return json.loads((PROFILES / name).read_text())


@pytest.mark.parametrize("name", SDS + VALUE_SETS)
def test_each_artifact_is_valid_fhir_with_its_canonical_url(name):
    resource = load(name)
    accept(resource, None, 64)
    assert resource["url"] == f"{CANONICAL}/{resource['resourceType']}/{resource['id']}"
    assert name == f"{resource['resourceType'].lower()}-{resource['id']}.json"


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_each_profile_constrains_its_r4_base(name):
    sd = load(f"structuredefinition-{name}.json")
    assert (sd["kind"], sd["derivation"], sd["fhirVersion"]) == ("resource", "constraint", "4.0.1")
    assert sd["baseDefinition"] == f"http://hl7.org/fhir/StructureDefinition/{sd['type']}"
    assert sd["snapshot"]["element"][0]["path"] == sd["type"]


@pytest.mark.parametrize("name", SDS)
def test_the_snapshot_carries_every_differential_element(name):
    sd = load(name)
    snapshot = {e["id"]: e for e in sd["snapshot"]["element"]}
    for diff in sd["differential"]["element"]:
        element = snapshot[diff["id"]]
        for key, value in diff.items():
            if key == "constraint":
                assert all(c in element["constraint"] for c in value), diff["id"]
            else:
                assert element[key] == value, (diff["id"], key)
        base_max = element["base"]["max"]
        assert element["min"] >= element["base"]["min"], diff["id"]
        assert base_max == "*" or element["max"] != "*" and int(element["max"]) <= int(base_max), diff["id"]


@pytest.mark.parametrize("name", SDS)
def test_every_binding_and_profile_of_ours_resolves_to_a_published_artifact(name):
    urls = {load(p)["url"] for p in PROFILES.glob("*.json") if load(p).get("url")}
    sd = load(name)
    for e in sd["snapshot"]["element"]:
        wanted = [e.get("binding", {}).get("valueSet")] + [p for t in e.get("type", ()) for p in t.get("profile", ())]
        for url in wanted:
            if url and url.startswith(CANONICAL):
                assert url in urls, (e["id"], url)


def test_each_of_our_code_systems_has_a_value_set_of_all_its_codes():
    for path in PROFILES.glob("codesystem-*.json"):
        cs = json.loads(path.read_text())
        vs = load(f"valueset-{cs['id']}.json")
        assert vs["compose"]["include"] == [{"system": cs["url"]}]


def test_the_generated_files_are_what_the_generator_writes():
    if not generator.SOURCE.exists():
        pytest.skip("needs ../shared/fhir-r4 (development time only)")
    built = generator.build()
    assert sorted(n for n in built if n.startswith("structuredefinition-")) == SDS
    for name, text in built.items():
        assert (PROFILES / name).read_text() == text, f"{name} is stale: run python -m profiles._generate_snapshots"
    assert generator.build() == built  # reproducible


@pytest.mark.req("SPB-D")
def test_the_content_rules_of_a_request_hold_only_once_it_is_submitted():
    tr = _differentials.TELEMED_REQUEST["elements"][0]["constraint"]
    assert tr and all(c["expression"].startswith("status = 'draft' or (") for c in tr)
