"""Test DICOM data made with pydicom from its bundled ``CT_small.dcm`` (no download): studies
with fresh UIDs, optionally with larger frames, and STOW-RS multipart bodies."""

from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

BOUNDARY = "dicomweb-test-boundary"
_BASE = None


def _base() -> Dataset:
    global _BASE
    if _BASE is None:
        _BASE = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    return _BASE


@dataclass
class Study:
    uid: str
    series: str
    datasets: list[Dataset]

    @property
    def instances(self) -> list[str]:
        return [ds.SOPInstanceUID for ds in self.datasets]

    def body(self) -> bytes:
        return multipart([to_bytes(ds) for ds in self.datasets])


def study(instances: int = 2, patient: str = "PAT1", name: str = "Test^Patient", side: int | None = None,
          uid: str | None = None) -> Study:
    """A CT study of ``instances`` images (128x128, or ``side`` x ``side`` random 16-bit pixels)."""
    study_uid, series_uid = uid or generate_uid(), generate_uid()
    out = []
    for n in range(instances):
        ds = copy.deepcopy(_base())
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName, ds.InstanceNumber = patient, name, n + 1
        ds.StudyDescription = f"study of {patient}"
        if side:
            ds.Rows = ds.Columns = side
            ds.PixelData = os.urandom(side * side * 2)
        out.append(ds)
    return Study(study_uid, series_uid, out)


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(parts: list[bytes], boundary: str = BOUNDARY, part_type: str = "application/dicom") -> bytes:
    out = b"".join(b"--" + boundary.encode() + f"\r\nContent-Type: {part_type}\r\n\r\n".encode() + p + b"\r\n"
                   for p in parts)
    return out + b"--" + boundary.encode() + b"--\r\n"


CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
