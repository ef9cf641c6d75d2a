"""STOW-RS request bodies: spooled (memory, then disk), split into parts, each part's DICOM
header read (the UIDs the access check and the ImagingStudy need), then sent on as they came.

A body that is not ``multipart/related`` with a boundary, has no closing boundary or no part,
or a part that is not a DICOM Part 10 file naming its study, series and instance, is 400 before
anything reaches the PACS. A part of another media type than ``application/dicom`` is 415
(this proxy does not take the DICOM JSON + bulk data form of STOW-RS).
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from typing import AsyncIterator, BinaryIO

from starlette.requests import Request

from fhir_server.errors import invalid, not_supported, too_long

CHUNK = 1 << 20
IN_MEMORY = 8 << 20
DICOM = "application/dicom"
TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "SeriesNumber",
        "InstanceNumber", "StudyDescription", "SeriesDescription", "StudyDate", "StudyTime", "PatientID"]


@dataclass(frozen=True, slots=True)
class Head:
    """What one stored instance says about itself."""

    study: str
    series: str
    instance: str
    sop_class: str | None
    modality: str | None
    series_number: int | None
    instance_number: int | None
    study_description: str | None
    series_description: str | None
    study_date: str | None
    study_time: str | None
    patient_id: str | None = None  # (0010,0020), padding stripped


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` body."""
    if not content_type:
        raise invalid("STOW-RS needs Content-Type: multipart/related; type=\"application/dicom\"; boundary=...",
                      "Content-Type")
    kind, _, rest = content_type.partition(";")
    if kind.strip().lower() != "multipart/related":
        raise not_supported(f"STOW-RS takes multipart/related bodies, not {kind.strip()}", "Content-Type",
                            status=415)
    params = _params(rest)
    part_type = params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise not_supported(f"Parts of type {part_type} are not accepted; send {DICOM} parts", "Content-Type",
                            status=415)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 70:
        raise invalid("The multipart/related Content-Type has no valid boundary parameter", "Content-Type")
    return boundary


def _params(text: str) -> dict[str, str]:
    out = {}
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if eq:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


async def spool(request: Request, max_bytes: int) -> BinaryIO:
    """The request body in a temporary file (kept in memory while small)."""
    f = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            f.close()
            raise too_long(f"The STOW-RS body is larger than {max_bytes} bytes")
        f.write(chunk)
    f.seek(0)
    return f


async def upload(f: BinaryIO) -> AsyncIterator[bytes]:
    f.seek(0)
    while chunk := f.read(CHUNK):
        yield chunk


def size_of(f: BinaryIO) -> int:
    f.seek(0, io.SEEK_END)
    return f.tell()


def _find_all(f: BinaryIO, needle: bytes) -> list[int]:
    out, pos, tail = [], 0, b""
    f.seek(0)
    while chunk := f.read(CHUNK):
        buf = tail + chunk
        base = pos - len(tail)
        i = buf.find(needle)
        while i != -1:
            out.append(base + i)
            i = buf.find(needle, i + 1)
        tail = buf[-(len(needle) - 1):]
        pos += len(chunk)
    return out


def split(f: BinaryIO, boundary: str) -> list[tuple[int, int]]:
    """The (start, end) byte ranges of the parts' bodies (RFC 2046 framing)."""
    dash = b"--" + boundary.encode("latin-1")
    f.seek(0)
    starts = [p + 2 for p in _find_all(f, b"\r\n" + dash)]
    f.seek(0)
    if f.read(len(dash)) == dash:
        starts.insert(0, 0)
    parts: list[tuple[int, int]] = []
    closed = False
    for n, at in enumerate(starts):
        f.seek(at + len(dash))
        after = f.read(2)
        if after == b"--":
            closed = True
            break
        f.seek(at + len(dash))
        head = f.read(16384)
        line_end = head.find(b"\r\n")
        headers_end = head.find(b"\r\n\r\n", line_end) if line_end != -1 else -1
        if line_end == -1 or (headers_end == -1 and head[line_end + 2:line_end + 4] != b"\r\n"):
            raise invalid(f"Part {n + 1} of the multipart body has no header section", "body")
        if head[line_end:line_end + 4] == b"\r\n\r\n":
            headers, body_start = b"", line_end + 4
        else:
            headers, body_start = head[line_end + 2:headers_end], headers_end + 4
        _check_part_type(headers, n + 1)
        if n + 1 >= len(starts):
            break
        parts.append((at + len(dash) + body_start, starts[n + 1] - 2))
    if not closed:
        raise invalid("The multipart body does not end with its closing boundary (--boundary--)", "body")
    if not parts:
        raise invalid("The multipart body has no parts", "body")
    return parts


def _check_part_type(headers: bytes, n: int) -> None:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            kind = value.decode("latin-1").split(";")[0].strip().lower()
            if kind != DICOM:
                raise not_supported(f"Part {n} is {kind}; only {DICOM} parts are accepted", "body", status=415)


class _Slice(io.RawIOBase):
    """A read-only view of ``f`` between ``start`` and ``end``."""

    name = "<STOW-RS part>"  # pydicom names its datasets after their file

    def __init__(self, f: BinaryIO, start: int, end: int):
        self.f, self.start, self.size, self.pos = f, start, end - start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


def heads(f: BinaryIO, parts: list[tuple[int, int]]) -> list[Head]:
    """Each part's header (blocking: run it in a thread)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    out = []
    for n, (start, end) in enumerate(parts, 1):
        try:
            ds = pydicom.dcmread(io.BufferedReader(_Slice(f, start, end)), stop_before_pixels=True,
                                 specific_tags=TAGS)
        except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
            raise invalid(f"Part {n} is not a DICOM Part 10 file ({exc})", "body") from None
        study, series, instance = (str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                                      "SOPInstanceUID"))
        if not (study and series and instance):
            raise invalid(f"Part {n} does not name its study, series and instance UIDs", "body")
        out.append(Head(study, series, instance, _str(ds, "SOPClassUID"), _str(ds, "Modality"),
                        _int(ds, "SeriesNumber"), _int(ds, "InstanceNumber"), _str(ds, "StudyDescription"),
                        _str(ds, "SeriesDescription"), _str(ds, "StudyDate"), _str(ds, "StudyTime"),
                        _str(ds, "PatientID")))
    return out


def _str(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value not in (None, "") else None


def _int(ds, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
