"""``telemed export``: the export engine run in this process on a store, files into a folder.

The job record is ``<out>/job.json``: an interrupted export run again with the same ``--out``
resumes where it stopped. At the end ``<out>/manifest.json`` lists the files (``url`` is the
file name) as a status request would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import orjson

from fhir_server.bulk import engine, params, status
from fhir_server.bulk.jobs import save_record
from fhir_server.search import params as search_params
from fhir_server.search.plan import parse_query
from fhir_server.write import now_instant

Progress = Callable[[str, int, int | None], None]  # (type, resources exported, total or None)


def new_record(types: list[str], since: str | None, type_filters: list[str]) -> dict:
    """A system-level job as an administrator's (no access limits)."""
    filters: dict[str, list] = {}
    for one in type_filters:
        type, _, query = one.partition("?")
        params.check_type(type, "--type-filter")
        items = parse_qsl(query, keep_blank_values=True)
        parse_query(type, items, strict=True)
        filters.setdefault(type, []).append(items)
    entries = [{"type": t, "kind": "resources", "queries": filters.get(t), "parts": [], "done": False} for t in types]
    if since:  # the manifest's ``deleted``
        entries.append({"type": "Bundle", "kind": "deleted", "file": "Deleted", "types": list(types), "parts": [],
                        "done": False})
    return {"id": "local", "state": "accepted", "transactionTime": now_instant(), "request": "telemed export",
            "since": params.instant(since, "--since") if since else None, "until": None, "elements": {},
            "patients": None, "warnings": [], "progress": 0, "associated": [], "types": entries}


async def export(store, settings, out: Path, types: list[str] | None, since: str | None, type_filters: list[str],
                 progress: Progress) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    job = out / "job.json"
    record = orjson.loads(job.read_bytes()) if job.exists() else None
    if record is None or record["state"] == "completed":
        record = new_record(types or sorted(search_params.resource_types()), since, type_filters)
        save_record(out, record)
    for state in record["types"]:
        if state.get("kind", "resources") != "resources":
            continue
        total = None
        if state.get("queries") is None and not record["since"]:
            page = await store.search(parse_query(state["type"], []), count=0, cursor=None, total=True)
            total = page.total
        progress(state["type"], sum(p["count"] for p in state.get("parts", [])), total)
    done = {s["type"]: sum(p["count"] for p in s.get("parts", [])) for s in record["types"]
            if s.get("kind", "resources") == "resources"}

    def on_batch(type: str, n: int) -> None:
        done[type] += n
        progress(type, done[type], None)

    await engine.run(store, settings, record, out, lambda r: save_record(out, r), on_batch=on_batch)
    manifest = status.manifest(record, files="", requires_token=False)
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
