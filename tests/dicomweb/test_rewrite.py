"""Upstream URLs in DICOM JSON and headers become the proxy's own."""

from __future__ import annotations

import pytest

from dicomweb.rewrite import Rewriter

pytestmark = pytest.mark.req("UA-V.1")

BASE = "https://telemed.example/dicomweb"


def test_retrieve_urls_and_bulk_data_uris_under_the_upstream_root_are_rewritten():
    rw = Rewriter("/dicom-web", BASE)
    body = [{"00081190": {"vr": "UR", "Value": ["http://localhost/dicom-web/studies/1.2"]},
             "7FE00010": {"vr": "OW", "BulkDataURI": "http://10.0.0.5:8042/dicom-web/studies/1.2/series/3/"
                                                     "instances/4/bulk/7fe00010?x=1"},
             "00081199": {"vr": "SQ", "Value": [{"00081190": {"vr": "UR", "Value": [
                 "http://pacs:8042/dicom-web/studies/1.2/series/3/instances/4"]}}]},
             "00081030": {"vr": "LO", "Value": ["http://pacs/dicom-web/ is not a URL field"]}}]
    rw.json(body)
    assert body[0]["00081190"]["Value"] == [f"{BASE}/studies/1.2"]
    assert body[0]["7FE00010"]["BulkDataURI"] == f"{BASE}/studies/1.2/series/3/instances/4/bulk/7fe00010?x=1"
    assert body[0]["00081199"]["Value"][0]["00081190"]["Value"] == [f"{BASE}/studies/1.2/series/3/instances/4"]
    assert body[0]["00081030"]["Value"] == ["http://pacs/dicom-web/ is not a URL field"]


def test_urls_outside_the_upstream_root_and_non_location_headers_are_kept():
    rw = Rewriter("/dicom-web", BASE)
    assert rw.url("http://pacs/other/studies/1") == "http://pacs/other/studies/1"
    assert rw.headers({"Location": "http://pacs/dicom-web/studies/1", "Content-Type": "x/dicom-web/"}) == \
        {"Location": f"{BASE}/studies/1", "Content-Type": "x/dicom-web/"}
