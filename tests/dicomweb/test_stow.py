"""STOW-RS through the proxy: to a consultation (ImagingStudy + link), access, bad bodies."""

from __future__ import annotations

import httpx
import pytest

from tests.dicomweb import data
from tests.dicomweb.conftest import client_for

pytestmark = [pytest.mark.req("UA-V.1"), pytest.mark.req("RU-29")]

STUDY = "urn:dicom:uid"


def imaging_studies(server, uid: str) -> list[dict]:
    bundle = httpx.get(f"{server.fhir}/ImagingStudy", params={"identifier": f"{STUDY}|urn:oid:{uid}"},
                       headers=server.headers("system")).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def supporting(server, request: str) -> list[str]:
    sr = httpx.get(f"{server.fhir}/ServiceRequest/{request}", headers=server.headers("system")).json()
    return [i["reference"] for i in sr.get("supportingInfo", [])]


def test_stow_to_a_request_stores_then_creates_the_imaging_study_and_link(server):
    new = data.study(2, patient="PAT-NEW", name="Test^NEW")
    client = client_for(server, "consultant", request="ServiceRequest/c1")
    result = client.store_instances(new.datasets)
    stored = [x.ReferencedSOPInstanceUID for x in result.ReferencedSOPSequence]
    assert set(stored) == set(new.instances)
    assert all(i.RetrieveURL.startswith(f"{server.dicomweb}/studies/{new.uid}/") for i in result.ReferencedSOPSequence)
    [study] = imaging_studies(server, new.uid)
    assert study["subject"] == {"reference": "Patient/p1"}
    assert study["basedOn"] == [{"reference": "ServiceRequest/c1"}]
    assert study["numberOfInstances"] == 2 and study["series"][0]["uid"] == new.series
    assert f"ImagingStudy/{study['id']}" in supporting(server, "c1")
    # Participants of c1 now see it; others do not.
    assert client_for(server, "requester").search_for_studies(search_filters={"StudyInstanceUID": new.uid})
    assert not client_for(server, "colleague").search_for_studies(search_filters={"StudyInstanceUID": new.uid})


def test_a_second_stow_adds_to_the_same_imaging_study_and_refreshes_metadata(server):
    new = data.study(2, patient="PAT-TWICE")
    first, second = data.Study(new.uid, new.series, new.datasets[:1]), data.Study(new.uid, new.series,
                                                                                  new.datasets[1:])
    client = client_for(server, "consultant", request="ServiceRequest/c1")
    client.store_instances(first.datasets)
    url = f"{server.dicomweb}/studies/{new.uid}/metadata"
    headers = server.headers("consultant")
    before = httpx.get(url, headers=headers)
    assert len(before.json()) == 1
    client.store_instances(second.datasets)
    after = httpx.get(url, headers={**headers, "If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and len(after.json()) == 2
    [study] = imaging_studies(server, new.uid)
    assert study["numberOfInstances"] == 2
    assert supporting(server, "c1").count(f"ImagingStudy/{study['id']}") == 1


def test_stow_of_a_new_study_without_a_request_is_403_for_a_user(server):
    new = data.study(1)
    r = httpx.post(f"{server.dicomweb}/studies", content=new.body(), headers={
        **server.headers("consultant"), "Content-Type": data.CONTENT_TYPE})
    assert r.status_code == 403
    assert not client_for(server, "system").search_for_studies(search_filters={"StudyInstanceUID": new.uid})


def test_stow_into_a_study_the_caller_may_not_see_is_403_and_stores_nothing(server):
    a = server.studies["A"]
    intruder = data.study(1, uid=a.uid)  # one more instance of study A, to consultation c2
    r = httpx.post(f"{server.dicomweb}/studies", params={"request": "ServiceRequest/c2"}, content=intruder.body(),
                   headers={**server.headers("unrelated"), "Content-Type": data.CONTENT_TYPE})
    assert r.status_code == 403
    found = client_for(server, "system").search_for_instances(a.uid)
    assert intruder.instances[0] not in {i["00080018"]["Value"][0] for i in found}
    assert len(imaging_studies(server, a.uid)) == 1


def test_stow_to_a_request_the_caller_does_not_take_part_in_is_404(server):
    new = data.study(1)
    r = httpx.post(f"{server.dicomweb}/studies", params={"request": "ServiceRequest/c2"}, content=new.body(),
                   headers={**server.headers("consultant"), "Content-Type": data.CONTENT_TYPE})
    assert r.status_code == 404
    assert imaging_studies(server, new.uid) == []


@pytest.mark.parametrize("body, content_type, status", [
    (data.multipart([b"x" * 200])[:-10], data.CONTENT_TYPE, 400),                 # no closing boundary
    (data.multipart([b"not a dicom file"]), data.CONTENT_TYPE, 400),              # a part that is not DICOM
    (b"--" + data.BOUNDARY.encode() + b"--\r\n", data.CONTENT_TYPE, 400),          # no parts
    (b"whatever", "multipart/related; type=\"application/dicom\"", 400),           # no boundary
    (b"whatever", "application/dicom", 415),                                       # not multipart
    (data.multipart([b"{}"], part_type="application/dicom+json"), data.CONTENT_TYPE, 415),
])
def test_bad_multipart_bodies_are_refused_before_the_pacs(server, body, content_type, status):
    r = httpx.post(f"{server.dicomweb}/studies", params={"request": "ServiceRequest/c1"}, content=body,
                   headers={**server.headers("consultant"), "Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
