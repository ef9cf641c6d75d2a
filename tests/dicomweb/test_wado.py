"""WADO-RS through the proxy: study, series, instance, metadata, frames, bulk data, rendered."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.dicomweb.conftest import client_for

pytestmark = [pytest.mark.req("UA-V.1"), pytest.mark.req("UA-VI.3")]

OCTET = (("application/octet-stream", "*"),)
WADO = ("urn:telemed:dicomweb", "wado-rs")


def test_retrieve_study_series_and_instance(server):
    client = client_for(server, "consultant")
    a = server.studies["A"]
    assert {ds.SOPInstanceUID for ds in client.retrieve_study(a.uid)} == set(a.instances)
    assert {ds.SOPInstanceUID for ds in client.retrieve_series(a.uid, a.series)} == set(a.instances)
    one = client.retrieve_instance(a.uid, a.series, a.instances[0])
    assert one.SOPInstanceUID == a.instances[0]
    assert one.PixelData == a.datasets[0].PixelData


def test_retrieve_instance_frames_in_the_transfer_syntax_asked_for(server):
    client = client_for(server, "consultant")
    b = server.studies["B"]
    frames = client.retrieve_instance_frames(b.uid, b.series, b.instances[0], [1], media_types=OCTET)
    assert frames == [b.datasets[0].PixelData]


def test_retrieve_rendered_instance_as_jpeg_and_png(server):
    client = client_for(server, "consultant")
    a = server.studies["A"]
    jpeg = client.retrieve_instance_rendered(a.uid, a.series, a.instances[0], media_types=("image/jpeg",))
    assert jpeg[:3] == b"\xff\xd8\xff"
    png = client.retrieve_instance_rendered(a.uid, a.series, a.instances[0], media_types=("image/png",))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    frame = client.retrieve_instance_frames_rendered(a.uid, a.series, a.instances[0], [1],
                                                     media_types=("image/png",))
    assert frame[:4] == b"\x89PNG"


def test_metadata_names_the_proxy_in_retrieve_and_bulk_data_urls(server):
    a = server.studies["A"]
    metadata = client_for(server, "consultant").retrieve_study_metadata(a.uid)
    assert len(metadata) == 2
    text = orjson.dumps(metadata).decode()
    assert "/dicom-web/" not in text
    bulk = [v["BulkDataURI"] for m in metadata for v in m.values() if isinstance(v, dict) and "BulkDataURI" in v]
    assert bulk and all(u.startswith(f"{server.dicomweb}/studies/{a.uid}/") for u in bulk)


def test_bulk_data_uri_from_metadata_is_served_by_the_proxy(server):
    a = server.studies["A"]
    headers = server.headers("consultant")
    metadata = httpx.get(f"{server.dicomweb}/studies/{a.uid}/series/{a.series}/instances/{a.instances[0]}/metadata",
                         headers=headers).json()
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    r = httpx.get(uri, headers={**headers, "Accept": 'multipart/related; type="application/octet-stream"'})
    assert r.status_code == 200, r.text
    assert a.datasets[0].PixelData in r.content


def test_metadata_has_an_etag_and_answers_304_to_if_none_match(server):
    a = server.studies["A"]
    url = f"{server.dicomweb}/studies/{a.uid}/metadata"
    headers = server.headers("consultant")
    first = httpx.get(url, headers=headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = httpx.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    assert httpx.get(url, headers={**headers, "If-None-Match": '"other"'}).status_code == 200


def test_unknown_study_is_404(server):
    for role in ("system", "consultant"):
        r = httpx.get(f"{server.dicomweb}/studies/1.2.3.999/metadata", headers=server.headers(role))
        assert r.status_code == 404, (role, r.text)
        assert r.json()["issue"][0]["code"] == "not-found"


def test_a_study_of_another_consultation_is_404_and_audited(server):
    c = server.studies["C"]
    r = httpx.get(f"{server.dicomweb}/studies/{c.uid}", headers=server.headers("consultant"))
    assert r.status_code == 404
    events = _audit_events(server, f"urn:oid:{c.uid}", "4", lambda e: e["agent"][0]["who"].get("reference") ==
                           "Practitioner/consultant" and {"system": WADO[0], "code": WADO[1]} in e["subtype"])
    assert events and events[0]["outcomeDesc"]


def test_every_allowed_retrieval_is_audited(server):
    d = server.studies["D"]
    r = httpx.get(f"{server.dicomweb}/studies/{d.uid}/metadata", headers=server.headers("p1"))
    assert r.status_code == 200
    [event, *_] = _audit_events(server, f"urn:oid:{d.uid}", "0",
                                lambda e: e["agent"][0]["who"].get("reference") == "Patient/p1"
                                and {"system": WADO[0], "code": WADO[1]} in e["subtype"])
    refs = {x.get("what", {}).get("reference") for x in event["entity"]}
    assert {"ImagingStudy/isD", "Patient/p1"} <= refs


def test_a_viewer_fetching_one_study_repeatedly_is_one_audit_event_spanning_its_requests(server):
    c = server.studies["C"]
    sub = "viewer-" + c.uid[-8:]
    headers = {"Authorization": "Bearer " + server.token("patient/*.rs openid fhirUser", patient="p2",
                                                         fhirUser="Patient/p2", sub=sub)}
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.headers.update(headers)
    client = DICOMwebClient(server.dicomweb, session=session)
    for uid in c.instances:  # one study: its instances and frames, as a viewer asks for them
        client.retrieve_instance(c.uid, c.series, uid)
        client.retrieve_instance(c.uid, c.series, uid)
    events = _audit_events(server, f"urn:oid:{c.uid}", "0", lambda e: e["agent"][0].get("altId") == sub)
    assert len(events) == 1
    assert events[0]["period"]["start"] < events[0]["period"]["end"]


def test_invalid_uid_is_400(server):
    r = httpx.get(f"{server.dicomweb}/studies/not-a-uid/metadata", headers=server.headers("system"))
    assert r.status_code == 400


def _audit_events(server, value: str, outcome: str, wanted) -> list[dict]:
    """The AuditEvents about study ``value`` with ``outcome`` that are ``wanted`` (waiting for the
    auditor's next batch)."""
    deadline = time.time() + 5
    while True:
        bundle = httpx.get(f"{server.fhir}/AuditEvent", params={"outcome": outcome, "_count": "200", "_sort": "-date"},
                           headers=server.headers("system")).json()
        events = [e["resource"] for e in bundle.get("entry", [])
                  if any(x.get("what", {}).get("identifier", {}).get("value") == value
                         for x in e["resource"].get("entity", [])) and wanted(e["resource"])]
        if events or time.time() > deadline:
            return events
        time.sleep(0.2)
