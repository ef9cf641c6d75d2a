"""The status URL of an export job: ``GET`` polls it, ``DELETE`` cancels it.

- running: 202 with ``X-Progress`` and ``Retry-After``;
- complete: 200 with the manifest (``transactionTime``, ``request``, ``requiresAccessToken``,
  ``output[]`` one entry per file with its ``type``, ``url`` and ``count``, ``error[]``; for a
  ``_since`` export ``deleted[]``, files of transaction Bundles with one DELETE entry per
  resource deleted since then) and ``Expires`` (when the files are deleted);
- failed: 500 with an OperationOutcome.
Only the client (and subject) that kicked the job off may poll, cancel or download (else 403).
"""

from __future__ import annotations

from email.utils import formatdate

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import exception, forbidden, issue, not_found, outcome
from fhir_server.http import json_response
from fhir_server.services import Services

RETRY_AFTER_SECONDS = 1


async def owned(request: Request, svc: Services, job_id: str) -> dict:
    """The job's record if the caller kicked it off (404 when unknown or expired, else 403)."""
    who = await svc.principal(request)
    record = svc.bulk.jobs.load(job_id)
    if record is None or record.get("expires_at", float("inf")) < _now():
        raise not_found(f"No export job {job_id} (it may have been cancelled or have expired)", "job")
    if (record["client_id"], record["subject"]) != (who.client_id, who.subject):
        raise forbidden("Only the client that kicked off an export may poll it or download its files", "job")
    return record


def manifest(record: dict, files: str | None = None, requires_token: bool = True) -> dict:
    """The completion manifest; ``files``: the URL of the files' folder ("": bare file names)."""
    files = f"{record['base']}/bulk-files/{record['id']}" if files is None else files

    def url(name: str) -> str:
        return f"{files}/{name}" if files else name

    def items(deleted: bool) -> list[dict]:
        return [{"type": "Bundle" if deleted else t["type"], "url": url(p["name"]), "count": p["count"]}
                for t in record["types"] if (t.get("kind") == "deleted") == deleted
                for p in t.get("parts", []) if p["count"]]

    errors = [{"type": "OperationOutcome", "url": url("errors-1.ndjson")}] if record.get("warnings") else []
    body = {"transactionTime": record["transactionTime"], "request": record["request"],
            "requiresAccessToken": requires_token, "output": items(False), "error": errors}
    if record.get("since"):  # what was deleted since _since: transaction Bundles of DELETE entries
        body["deleted"] = items(True)
    return body


def progress(record: dict) -> str:
    done = sum(1 for t in record["types"] if t.get("done"))
    return f"{record['state']}: {done} of {len(record['types'])} steps, {record.get('progress', 0)} resources"


async def handle(request: Request, svc: Services) -> Response:
    record = await owned(request, svc, request.path_params["job"])
    state = record["state"]
    if state == "completed":
        expires = formatdate(record["expires_at"], usegmt=True)
        return json_response(manifest(record), 200, {"Expires": expires})
    if state == "failed":
        raise exception(f"The export failed: {record.get('error', 'unknown error')}", "job")
    return Response(status_code=202, headers={"X-Progress": progress(record), "Retry-After": str(RETRY_AFTER_SECONDS)})


async def cancel(request: Request, svc: Services) -> Response:
    job_id = request.path_params["job"]
    await owned(request, svc, job_id)
    svc.bulk.jobs.cancel(job_id)
    body = outcome([issue("informational", f"Export job {job_id} cancelled; its files are deleted",
                          severity="information")])
    return json_response(body, 202)


def _now() -> float:
    import time

    return time.time()
