"""``telemed load``: Bundles (JSON) and NDJSON files into the server, through its REST write path.

Transaction Bundles are posted as they are (all or nothing). Batch and collection Bundles and
NDJSON lines are posted in chunks of ``chunk`` entries (``PUT Type/id`` when the resource has an
id, else ``POST Type``), several chunks at a time: each chunk as one transaction (one commit),
and a chunk that is refused again as a batch, so every resource is accepted or rejected on its
own and the reason is reported. Files are loaded in an order that puts the
resources others point to (Organization, Location, Practitioner, Patient...) first, so the
conditional references of bulk data (``Practitioner?identifier=...``) resolve; entries whose
reference target was not there yet are tried once more at the end.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

FIRST = ["Organization", "Location", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device",
         "Group", "Encounter", "EpisodeOfCare", "Condition", "Medication"]


@dataclass
class Summary:
    loaded: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)


def _type_order(path: Path) -> tuple[int, str]:
    t = path.name.split(".")[0]
    return (FIRST.index(t) if t in FIRST else len(FIRST), path.name)


def expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and f.name.endswith((".json", ".ndjson", ".ndjson.gz", ".json.gz"))]
        else:
            files.append(p)
    return sorted(files, key=_type_order)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def ndjson(path: Path) -> Iterator[tuple[str, dict | None, str | None]]:
    """(where, resource, error) per non-empty line."""
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"{path.name}:{n}", orjson.loads(line), None
                except orjson.JSONDecodeError as exc:
                    yield f"{path.name}:{n}", None, f"not JSON: {exc}"


def entry_for(resource: dict) -> dict:
    rid, rtype = resource.get("id"), resource.get("resourceType")
    request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": str(rtype)}
    return {"resource": resource, "request": request}


def count_items(files: list[Path]) -> int:
    total = 0
    for f in files:
        if ".ndjson" in f.name:
            with _open(f) as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            total += 1
    return total


class Loader:
    def __init__(self, client: httpx.AsyncClient, chunk: int = 100, concurrency: int = 4):
        self.client, self.chunk, self.concurrency = client, chunk, concurrency
        self.summary = Summary()
        self._retry: list[tuple[str, dict]] = []

    async def load(self, files: list[Path], progress: Progress | None = None) -> Summary:
        task = progress.add_task("loading", total=count_items(files)) if progress else None
        for f in files:
            if progress:
                progress.update(task, description=f.name)
            if ".ndjson" in f.name:
                await self._ndjson(f, progress, task)
            else:
                await self._bundle_file(f)
                if progress:
                    progress.advance(task)
        retry, self._retry = self._retry, []
        for where, resource in retry:  # targets that were loaded after the entry that needs them
            await self._batch([(where, resource)], final=True)
        return self.summary

    async def _ndjson(self, path: Path, progress, task) -> None:
        """Chunks of the file, ``concurrency`` in flight; reading waits for a free slot, so memory
        stays bounded by concurrency x chunk whatever the file's size."""
        in_flight: set[asyncio.Task] = set()
        chunk: list[tuple[str, dict]] = []

        async def run(items):
            await self._batch(items)
            if progress:
                progress.advance(task, len(items))

        async def submit(items) -> None:
            while len(in_flight) >= self.concurrency:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
                for t in done:
                    t.result()  # a loader bug surfaces here, not silently
            in_flight.add(asyncio.create_task(run(items)))

        for where, resource, error in ndjson(path):
            if error:
                self.summary.rejected.append((where, error))
                if progress:
                    progress.advance(task)
                continue
            chunk.append((where, resource))
            if len(chunk) >= self.chunk:
                await submit(chunk)
                chunk = []
        if chunk:
            await submit(chunk)
        for t in in_flight:
            await t

    async def _bundle_file(self, path: Path) -> None:
        with _open(path) as f:
            try:
                doc = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                self.summary.rejected.append((path.name, f"not JSON: {exc}"))
                return
        if not isinstance(doc, dict):
            self.summary.rejected.append((path.name, "not a FHIR resource"))
            return
        if doc.get("resourceType") == "Bundle" and doc.get("type") == "transaction":
            r = await self.client.post("", content=orjson.dumps(doc), headers=_headers(minimal=True))
            if r.status_code == 200:
                self.summary.loaded += len(doc.get("entry") or [])
            else:
                self.summary.rejected.append((path.name, _reason(r.json() if r.content else {})))
            return
        if doc.get("resourceType") == "Bundle" and doc.get("type") in ("batch", "collection", "searchset"):
            items = [(f"{path.name}#entry[{i}]", e.get("resource")) for i, e in enumerate(doc.get("entry") or [])]
            for start in range(0, len(items), self.chunk):
                await self._batch(items[start:start + self.chunk])
            return
        await self._batch([(path.name, doc)])

    async def _batch(self, items: list[tuple[str, dict]], final: bool = False) -> None:
        """Load ``items`` as one transaction (one commit); if any is refused, entry by entry as a
        batch, so the good ones load and each refusal has its reason."""
        if len(items) > 1:
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry_for(r) for _, r in items]}
            r = await self.client.post("", content=orjson.dumps(bundle), headers=_headers(minimal=True))
            if r.status_code == 200:
                self.summary.loaded += len(items)
                return
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry_for(r) for _, r in items]}
        r = await self.client.post("", content=orjson.dumps(bundle), headers=_headers(minimal=True))
        if r.status_code != 200:
            reason = _reason(r.json()) if r.content else f"HTTP {r.status_code}"
            self.summary.rejected += [(w, reason) for w, _ in items]
            return
        for (where, resource), e in zip(items, r.json().get("entry", [])):
            resp = e.get("response", {})
            if resp.get("status", "").startswith(("200", "201")):
                self.summary.loaded += 1
            elif not final and resp.get("status", "").startswith("404") and "Conditional reference" in _reason(resp.get("outcome", {})):
                self._retry.append((where, resource))
            else:
                self.summary.rejected.append((where, _reason(resp.get("outcome", {}))))


def _headers(minimal: bool) -> dict:
    h = {"Content-Type": "application/fhir+json"}
    if minimal:
        h["Prefer"] = "return=minimal"
    return h


def _reason(outcome: dict) -> str:
    """The issues as ``element: diagnostics``, without the batch's own entry numbering."""
    parts = []
    for i in outcome.get("issue") or []:
        text = re.sub(r"^Bundle\.entry\[\d+\]: ", "", i.get("diagnostics") or i.get("code", ""))
        where = [re.sub(r"^Bundle\.entry\[\d+\]\.resource\.", "", x) for x in i.get("expression") or []]
        parts.append(f"{', '.join(where)}: {text}" if where else text)
    return "; ".join(parts) or "rejected"


def progress_bar(disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=disable)
