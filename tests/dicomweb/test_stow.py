"""STOW-RS through the proxy: to a consultation (ImagingStudy + link), access, bad bodies."""

from __future__ import annotations

import httpx
import pytest

from tests.dicomweb import data
from tests.dicomweb.conftest import P1_MRN, P1_SNILS, P2_MRN, client_for

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
    new = data.study(2, patient=P1_MRN, name="Test^NEW")
    requester = client_for(server, "requester")
    requester.search_for_studies()  # the requester's visible studies are now kept for a moment
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
    # Participants of c1 see it at once (a STOW forgets what callers were seen to see); others do not.
    assert requester.search_for_studies(search_filters={"StudyInstanceUID": new.uid})
    assert not client_for(server, "colleague").search_for_studies(search_filters={"StudyInstanceUID": new.uid})


def test_a_second_stow_adds_to_the_same_imaging_study_and_refreshes_metadata(server):
    new = data.study(2, patient=P1_MRN)
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


def _stow(server, role: str, request: str, study: data.Study):
    return httpx.post(f"{server.dicomweb}/studies", params={"request": request}, content=study.body(),
                      headers={**server.headers(role), "Content-Type": data.CONTENT_TYPE}, timeout=60)


def _in_pacs(server, study: data.Study) -> bool:
    return bool(client_for(server, "system").search_for_studies(search_filters={"StudyInstanceUID": study.uid}))


@pytest.mark.req("CN-4.4")
def test_instances_of_another_patient_are_refused_with_422_naming_patient_id(server):
    other = data.study(2, patient=P2_MRN)  # patient p2's record number, to p1's consultation
    r = _stow(server, "consultant", "ServiceRequest/c1", other)
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(outcome["issue"]) == 2
    for found in outcome["issue"]:
        assert found["code"] == "business-rule" and found["expression"] == ["PatientID"]
        assert "(0010,0020)" in found["diagnostics"] and P2_MRN in found["diagnostics"]
    assert not _in_pacs(server, other)
    assert imaging_studies(server, other.uid) == []


@pytest.mark.req("CN-4.4")
def test_one_instance_of_another_patient_refuses_the_whole_upload(server):
    mixed = data.study(2, patient=P1_MRN)
    mixed.datasets[1].PatientID = "SOMEONE-ELSE"
    r = _stow(server, "consultant", "ServiceRequest/c1", mixed)
    assert r.status_code == 422
    [found] = r.json()["issue"]
    assert "Part 2" in found["diagnostics"] and "SOMEONE-ELSE" in found["diagnostics"]
    assert not _in_pacs(server, mixed)


@pytest.mark.req("CN-4.4")
def test_an_instance_without_patient_id_is_refused(server):
    anonymous = data.study(1, patient="")
    r = _stow(server, "consultant", "ServiceRequest/c1", anonymous)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["PatientID"]
    assert not _in_pacs(server, anonymous)


@pytest.mark.parametrize("patient_id", [P1_SNILS, "12345678901", "123 456 789 01", " p1-mrn-0001 "])
def test_patient_id_matches_any_identifier_without_spaces_hyphens_or_case(server, patient_id):
    ok = data.study(1, patient=patient_id)
    r = _stow(server, "consultant", "ServiceRequest/c1", ok)
    assert r.status_code == 200, r.text
    assert imaging_studies(server, ok.uid)[0]["subject"] == {"reference": "Patient/p1"}


def test_a_request_whose_patient_has_no_identifier_refuses_stow_naming_the_request(server):
    headers = server.headers("system")
    patient = {"resourceType": "Patient", "id": "p-noid", "name": [{"family": "noid"}]}
    assert httpx.put(f"{server.fhir}/Patient/p-noid", json=patient, headers=headers).status_code in (200, 201)
    c1 = httpx.get(f"{server.fhir}/ServiceRequest/c1", headers=headers).json()
    sr = {k: c1[k] for k in ("resourceType", "status", "intent", "category", "requester")}
    sr.update(id="c-noid", subject={"reference": "Patient/p-noid"})
    assert httpx.put(f"{server.fhir}/ServiceRequest/c-noid", json=sr, headers=headers).status_code in (200, 201)
    study = data.study(1, patient="ANY")
    r = _stow(server, "requester", "ServiceRequest/c-noid", study)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["request", "PatientID"]
    assert not _in_pacs(server, study)


def _failed(result: dict) -> dict[str, int]:
    return {i["00081155"]["Value"][0]: i["00081197"]["Value"][0] for i in result.get("00081198", {}).get("Value", [])}


def _referenced(result: dict) -> set[str]:
    return {i["00081155"]["Value"][0] for i in result.get("00081199", {}).get("Value", [])}


def test_a_partly_stored_upload_is_202_with_a_result_for_every_part_and_links_what_was_stored(server):
    a, b = data.study(1, patient=P1_MRN), data.study(1, patient=P1_MRN)
    body = data.multipart([data.to_bytes(a.datasets[0]), data.to_bytes(b.datasets[0])])
    # To /studies/{A}: the PACS stores A's instance and refuses B's (another study).
    r = httpx.post(f"{server.dicomweb}/studies/{a.uid}", params={"request": "ServiceRequest/c1"}, content=body,
                   headers={**server.headers("consultant"), "Content-Type": data.CONTENT_TYPE}, timeout=60)
    assert r.status_code == 202, r.text
    result = r.json()
    assert _referenced(result) == {a.instances[0]}
    assert set(_failed(result)) == {b.instances[0]}
    assert len(imaging_studies(server, a.uid)) == 1
    assert imaging_studies(server, b.uid) == []


def test_a_part_the_pacs_cannot_store_and_does_not_name_still_gets_a_failure_entry(server):
    good, bad = data.study(1, patient=P1_MRN), data.study(1, patient=P1_MRN)
    ds = bad.datasets[0]
    del ds.SOPClassUID  # readable here, refused by Orthanc without naming the part
    ds.file_meta.MediaStorageSOPClassUID = "1.2.3"
    body = data.multipart([data.to_bytes(good.datasets[0]), data.to_bytes(ds)])
    r = httpx.post(f"{server.dicomweb}/studies", params={"request": "ServiceRequest/c1"}, content=body,
                   headers={**server.headers("consultant"), "Content-Type": data.CONTENT_TYPE}, timeout=60)
    assert r.status_code == 202, r.text
    result = r.json()
    assert _referenced(result) == {good.instances[0]}
    assert _failed(result) == {bad.instances[0]: 0x0110}
    assert len(imaging_studies(server, good.uid)) == 1 and imaging_studies(server, bad.uid) == []


def test_an_upload_stored_whole_is_200_without_failures(server):
    new = data.study(2, patient=P1_MRN)
    r = _stow(server, "consultant", "ServiceRequest/c1", new)
    assert r.status_code == 200
    assert _referenced(r.json()) == set(new.instances) and not _failed(r.json())
