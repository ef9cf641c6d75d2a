"""``GET [base]/bulk-files/{job}/{file}``: one NDJSON output file of a completed export.

Needs an access token of the client (and subject) that kicked the export off. Gzip-compressed
on the fly when ``Accept-Encoding`` allows it (the files are kept uncompressed so an
interrupted job can resume by cutting a file back). Every download writes an AuditEvent.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fhir_server import audit
from fhir_server.bulk.status import owned
from fhir_server.errors import not_found
from fhir_server.services import Services

FILE_NAME = re.compile(r"^[A-Za-z]+-[0-9]+\.ndjson$")
CHUNK = 1024 * 1024
MEDIA_TYPE = "application/fhir+ndjson"


async def handle(request: Request, svc: Services) -> Response:
    job_id, name = request.path_params["job"], request.path_params["name"]
    record = await owned(request, svc, job_id)
    path = svc.bulk.jobs.dir(job_id) / name
    if record["state"] != "completed" or not FILE_NAME.match(name) or not path.is_file():
        raise not_found(f"No file {name} in export job {job_id}", "file")
    who = await svc.principal(request)
    svc.auditor.record_event(audit.event("operation", who, audit.address(request), [], [],
                                         query=request.url.path, detail=f"bulk export file {job_id}/{name} downloaded"))
    gzip = _accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip else {
        "Content-Length": str(path.stat().st_size), "Vary": "Accept-Encoding"}
    return StreamingResponse(_gzipped(path) if gzip else _chunks(path), media_type=MEDIA_TYPE, headers=headers)


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, q = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return q.strip().replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _gzipped(path: Path) -> Iterator[bytes]:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    for chunk in _chunks(path):
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()
