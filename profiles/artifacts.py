"""The artifacts of our implementation guide (``profiles/*.json``) as the server serves them.

Every StructureDefinition, SearchParameter, OperationDefinition, CodeSystem and ValueSet in this
folder is a read-only resource of the server, with the artifact's own id, version ``1`` and
``lastUpdated`` its ``date``. They are not written into the store: they are the server's own
definitions, served from memory (``profiles.serving``), so a fresh store stays empty (no start-up
write, nothing in history or bulk export) and an upgrade serves the new definitions at once.
Loaded once per process, on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import orjson

from fhir_server.errors import OperationOutcomeError, issue, unprocessable
from fhir_server.storage.port import Stored
from profiles import CANONICAL, PROFILES

TYPES = ("StructureDefinition", "SearchParameter", "OperationDefinition", "CodeSystem", "ValueSet")


@dataclass(frozen=True, slots=True)
class Catalog:
    by_key: dict[tuple[str, str], dict]  # (type, id) -> the artifact as served (with meta)
    by_url: dict[str, dict]  # canonical url -> the artifact
    stored: dict[tuple[str, str], Stored]  # (type, id) -> its bytes, as a store would answer a read


def _served(resource: dict) -> dict:
    updated = f"{resource.get('date', '2026-01-01')[:10]}T00:00:00.000000Z"
    meta = {"versionId": "1", "lastUpdated": updated}
    return {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta,
            **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}


@cache
def catalog() -> Catalog:
    by_key, by_url, stored = {}, {}, {}
    for path in sorted(PROFILES.glob("*.json")):
        resource = json.loads(path.read_text())
        if resource.get("resourceType") not in TYPES:
            continue
        served = _served(resource)
        key = (served["resourceType"], served["id"])
        by_key[key] = served
        by_url[served["url"]] = served
        stored[key] = Stored(key[0], key[1], 1, served["meta"]["lastUpdated"], False, orjson.dumps(served), "PUT")
    return Catalog(by_key, by_url, stored)


def get(type: str, id: str) -> Stored | None:
    """The artifact ``type/id`` as stored bytes, None when it is not one of ours."""
    return catalog().stored.get((type, id)) if type in TYPES else None


def by_url(url: str) -> dict | None:
    return catalog().by_url.get(url.split("|", 1)[0])


def profiles_by_type() -> dict[str, list[str]]:
    """Resource type -> the urls of our profiles of it (CapabilityStatement.rest.resource.supportedProfile)."""
    out: dict[str, list[str]] = {}
    for (type, _), r in sorted(catalog().by_key.items()):
        if type == "StructureDefinition" and r.get("kind") == "resource" and r.get("derivation") == "constraint":
            out.setdefault(r["type"], []).append(r["url"])
    return out


def is_ours(url: object) -> bool:
    return isinstance(url, str) and url.startswith(CANONICAL + "/")


def read_only(type: str, id: str) -> OperationOutcomeError:
    return OperationOutcomeError([issue("not-supported", f"{type}/{id} is an artifact of this server's implementation "
                                        "guide; it cannot be changed or deleted", f"{type}/{id}")], status=405)


def guard(resource: dict, id: str) -> None:
    """Called by the write path for every version: our artifacts and our canonical URLs stay ours."""
    type = resource["resourceType"]
    if type not in TYPES:
        return
    if (type, id) in catalog().by_key:
        raise read_only(type, id)
    if is_ours(resource.get("url")):
        raise unprocessable(f"Canonical URLs under {CANONICAL}/ name this server's own artifacts; "
                            f"{resource['url']} cannot be defined by a client", f"{type}.url")
