"""QIDO-RS through the proxy: answers limited to the studies the caller may see."""

from __future__ import annotations

import time

import httpx
import pytest

from dicomweb.access import VISIBLE_SECONDS
from tests.dicomweb import data
from tests.dicomweb.conftest import P1_MRN, client_for, imaging_study, store_direct

pytestmark = [pytest.mark.req("UA-V.1"), pytest.mark.req("UA-VI.3")]

STUDY_UID = "0020000D"


def uids(results: list[dict]) -> set[str]:
    return {r[STUDY_UID]["Value"][0] for r in results}


def named(server, *keys: str) -> set[str]:
    return {server.studies[k].uid for k in keys}


@pytest.mark.parametrize("role, sees", [
    ("consultant", "AB"),  # A through the request's supportingInfo, B through its Task's input
    ("requester", "AB"),
    ("colleague", ""),     # same organisation as the consultant, no part in the consultation
    ("unrelated", "C"),
    ("p1", "ABD"),         # patient token: the patient's compartment, linked or not
    ("p2", "C"),
    ("system", "ABCD"),
])
def test_search_for_studies_returns_only_visible_studies(server, role, sees):
    found = uids(client_for(server, role).search_for_studies())
    assert found & named(server, *"ABCD") == named(server, *sees)


def test_query_names_with_dicom_matching_characters_reach_the_pacs_unencoded(server):
    # dicomweb-client percent-encodes ^ and *; Orthanc 1.10 would then match nothing.
    client = client_for(server, "consultant")
    assert uids(client.search_for_studies(search_filters={"PatientName": "Test^PATA"})) == named(server, "A")
    assert uids(client.search_for_studies(search_filters={"PatientName": "Test^PAT*"})) == named(server, "A", "B")
    assert uids(client.search_for_studies(search_filters={"PatientID": "PAT-C"})) == set()


def test_limit_offset_and_includefield_are_passed_to_the_pacs(server):
    client = client_for(server, "consultant")
    everything = client.search_for_studies(search_filters={"PatientName": "Test^PAT*"})
    assert len(everything) == 2
    first = client.search_for_studies(search_filters={"PatientName": "Test^PAT*"}, limit=1)
    second = client.search_for_studies(search_filters={"PatientName": "Test^PAT*"}, limit=1, offset=1)
    assert len(first) == len(second) == 1 and uids(first) | uids(second) == named(server, "A", "B")
    with_description = client.search_for_studies(search_filters={"PatientName": "Test^PATA"},
                                                 fields=["StudyDescription"])
    assert with_description[0]["00081030"]["Value"] == ["study of PAT-A"]


def test_fuzzymatching_is_answered_with_a_warning(server):
    r = httpx.get(f"{server.dicomweb}/studies", params={"fuzzymatching": "true"}, headers=server.headers("consultant"))
    assert r.status_code == 200
    assert "fuzzymatching" in r.headers["warning"]


def test_series_and_instances_of_a_visible_study(server):
    client = client_for(server, "consultant")
    a = server.studies["A"]
    series = client.search_for_series(a.uid)
    assert [s["0020000E"]["Value"][0] for s in series] == [a.series]
    instances = client.search_for_instances(a.uid, a.series)
    assert {i["00080018"]["Value"][0] for i in instances} == set(a.instances)
    everywhere = client.search_for_series()
    assert {s[STUDY_UID]["Value"][0] for s in everywhere} <= named(server, "A", "B")


def test_results_name_the_proxy_in_retrieve_urls(server):
    results = client_for(server, "consultant").search_for_studies(search_filters={"PatientID": "PAT-A"})
    url = results[0]["00081190"]["Value"][0]
    assert url == f"{server.dicomweb}/studies/{server.studies['A'].uid}"


def test_series_of_a_study_the_caller_may_not_see_is_404(server):
    r = httpx.get(f"{server.dicomweb}/studies/{server.studies['C'].uid}/series", headers=server.headers("consultant"))
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-found"


def test_a_token_without_imaging_study_scope_is_403(server):
    headers = {"Authorization": f"Bearer {server.token('user/Observation.rs', fhirUser='Practitioner/consultant')}"}
    r = httpx.get(f"{server.dicomweb}/studies", headers=headers)
    assert r.status_code == 403
    assert r.json()["issue"][0]["code"] == "forbidden"


def test_no_token_is_401(server):
    assert httpx.get(f"{server.dicomweb}/studies").status_code == 401


def test_links_made_or_removed_through_fhir_show_within_seconds(server, pacs):
    e = data.study(1, patient=P1_MRN)
    store_direct(pacs, e)
    headers = server.headers("system")
    put = lambda r: httpx.put(f"{server.fhir}/{r['resourceType']}/{r['id']}", json=r, headers=headers)  # noqa: E731
    assert put(imaging_study("isE", e, "p1")).status_code in (200, 201)
    c1 = httpx.get(f"{server.fhir}/ServiceRequest/c1", headers=headers).json()
    request = {k: c1[k] for k in ("resourceType", "status", "intent", "category", "requester", "subject")}
    request["id"] = "cE"
    assert put(request).status_code in (200, 201)
    requester = client_for(server, "requester")
    sees = lambda: bool(requester.search_for_studies(search_filters={"StudyInstanceUID": e.uid}))  # noqa: E731
    assert not sees()

    def after_change(expected: bool) -> float:
        start = time.monotonic()
        while sees() != expected:
            assert time.monotonic() - start < VISIBLE_SECONDS + 3, f"still {not expected} after the change"
            time.sleep(0.1)
        return time.monotonic() - start

    assert put({**request, "supportingInfo": [{"reference": "ImagingStudy/isE"}]}).status_code == 200
    after_change(True)
    assert put(request).status_code == 200  # the link removed: access goes with it
    after_change(False)
