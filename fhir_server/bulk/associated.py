"""``includeAssociatedData``: the Provenance resources of the resources an export returns.

The export's entry of kind "associated" reads every Provenance of the snapshot (within the
caller's access to Provenance) and keeps those this module wants, written to
``AssociatedProvenance-<n>.ndjson`` files listed as type ``Provenance``:

- ``RelevantProvenanceResources``: every Provenance whose ``target`` is a resource the export
  returns (not a Provenance itself);
- ``LatestProvenanceResources``: for each resource the export returns, the most recent
  Provenance targeting it (greatest ``recorded``, then ``meta.lastUpdated``); other Provenance
  resources are not added.

Both are judged as of ``transactionTime``: the Provenance's version then, and whether each
target is returned by the export is decided as the export decides it (its version then, the
type's filters; ``snapshot.Job.exported``). A Provenance the export returns anyway (``_type``
includes Provenance) is not repeated. The candidates for "latest" are found by the current
``target`` index, and the Provenance at hand is one of them (Provenance resources are records,
not edited in practice).
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from fhir_server.bulk.readers import wanted
from fhir_server.search import execute
from fhir_server.search.plan import parse_query

LATEST, RELEVANT = "LatestProvenanceResources", "RelevantProvenanceResources"
SUPPORTED = (LATEST, RELEVANT)
CACHE_SIZE = 10_000
LATEST_BOUND = 1000  # Provenance resources looked at per target for "latest"


def targets(body: bytes, base: str | None = None) -> list[tuple[str, str]]:
    """(type, id) of a Provenance's ``target`` references: relative, versioned, or absolute on
    this server's ``base``."""
    out = []
    for t in orjson.loads(body).get("target") or []:
        ref = t.get("reference") if isinstance(t, dict) else None
        if not isinstance(ref, str):
            continue
        if base and ref.startswith(base.rstrip("/") + "/"):
            ref = ref[len(base.rstrip("/")) + 1:]
        parts = ref.split("/_history/")[0].split("/")
        if len(parts) == 2 and parts[0][:1].isupper() and parts[1]:
            out.append((parts[0], parts[1]))
    return out


def _utc(instant) -> str:
    """An instant as comparable UTC text ("" when missing or malformed)."""
    if not isinstance(instant, str):
        return ""
    try:
        t = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Associated:
    def __init__(self, job, codes: list[str], queries: list | None):
        self.job, self.queries = job, queries
        self.latest_only = RELEVANT not in codes
        self._exported: dict[tuple[str, str], bool] = {}
        self._latest: dict[tuple[str, str], tuple | None] = {}

    async def wants(self, id: str, body: bytes) -> bool:
        """Whether the Provenance ``id`` (its version at ``transactionTime``: ``body``) is added."""
        if await self.job.exported("Provenance", id):
            return False  # returned by the export anyway
        found = [t for t in targets(body, self.job.base) if t[0] != "Provenance" and await self._is_exported(t)]
        if not found:
            return False
        if not self.latest_only:
            return True
        mine = _key(id, body)
        for t in found:
            best = await self._latest_of(t)
            if best is None or mine >= best:
                return True
        return False

    async def _is_exported(self, target: tuple[str, str]) -> bool:
        hit = self._exported.get(target)
        if hit is None:
            if len(self._exported) >= CACHE_SIZE:
                self._exported.clear()
            hit = self._exported[target] = await self.job.exported(*target)
        return hit

    async def _latest_of(self, target: tuple[str, str]) -> tuple | None:
        """The ordering key of the latest Provenance the ``target`` index finds for ``target``."""
        if target in self._latest:
            return self._latest[target]
        job = self.job
        ref = f"{target[0]}/{target[1]}"
        page = await execute.search(job.store, parse_query("Provenance", [("target", ref)], strict=True),
                                    count=LATEST_BOUND, cursor=None, total=False, bound=job.bound)
        ids = [s.id for s in page.entries]
        versions = await job.reader.versions_at("Provenance", ids, job.at)
        best = None
        for id in ids:
            v = versions.get(id)
            if not wanted(v, None, None) or target not in targets(v.json, job.base):
                continue
            if self.queries is not None and not await job.matcher.matches(v, self.queries):
                continue  # outside the caller's access
            key = _key(id, v.json)
            if best is None or key > best:
                best = key
        if len(self._latest) >= CACHE_SIZE:
            self._latest.clear()
        self._latest[target] = best
        return best


def _key(id: str, body: bytes) -> tuple[str, str, str]:
    """Which of two Provenance resources is the more recent: ``recorded``, then ``meta.lastUpdated``."""
    resource = orjson.loads(body)
    return _utc(resource.get("recorded")), _utc((resource.get("meta") or {}).get("lastUpdated")), id
