"""Splitting STOW-RS bodies (spooled to a file) into parts and reading their DICOM headers."""

from __future__ import annotations

import io

import pytest

from dicomweb.stow_parts import boundary_of, heads, split
from fhir_server.errors import OperationOutcomeError
from tests.dicomweb import data

pytestmark = pytest.mark.req("UA-V.1")


def test_parts_are_found_across_chunk_edges_and_their_uids_read(monkeypatch):
    monkeypatch.setattr("dicomweb.stow_parts.CHUNK", 1000)  # boundaries straddle reads
    study = data.study(3)
    body = io.BytesIO(b"preamble to ignore\r\n" + study.body() + b"epilogue")
    parts = split(body, data.BOUNDARY)
    assert [body.getvalue()[s:e] for s, e in parts] == [data.to_bytes(ds) for ds in study.datasets]
    found = heads(body, parts)
    assert [(h.study, h.series, h.instance) for h in found] == [(study.uid, study.series, i) for i in study.instances]
    assert found[0].modality == "CT" and found[0].instance_number == 1


@pytest.mark.parametrize("content_type, status", [
    (None, 400), ("application/dicom", 415), ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
    ("multipart/related", 400),
])
def test_content_types_other_than_multipart_related_dicom_are_refused(content_type, status):
    with pytest.raises(OperationOutcomeError) as err:
        boundary_of(content_type)
    assert err.value.status == status


def test_boundary_is_read_quoted_or_not():
    assert boundary_of('multipart/related; type="application/dicom"; boundary="a b"') == "a b"
    assert boundary_of("Multipart/Related; boundary=xyz") == "xyz"
