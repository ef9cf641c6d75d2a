"""Preparing versions to write: accepting a body, stamping id/meta, and committing with retries.

Every write path (create, update, patch, delete, bundles, operations, the loader) goes through
``accept`` (validation) and ``new_version`` (stamp + index), and commits via ``commit_retrying``.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import orjson

from fhir_server.errors import conflict, invalid, not_found, precondition_failed, structure, too_costly
from fhir_server.search import params as search_params
from fhir_server.search.extract import extract
from fhir_server.storage.port import Guard, Store, Stored, VersionConflict, Write
from fhir_server.validation.structure import validate
from profiles import artifacts, validator as profile_validator

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
RETRIES = 16
BACKOFF_MAX = 0.05

T = TypeVar("T")


@dataclass(slots=True)
class Planned:
    """What one interaction decided: the writes (and guards) to commit, and what to answer."""

    status: int
    stored: Stored | None = None
    writes: list[Write] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)
    location: bool = False
    message: str | None = None


async def commit_planned(store: Store, plan: Callable[[], Awaitable[Planned]]) -> Planned:
    """Plan and commit, again from the start whenever a concurrent writer wins the race."""

    async def attempt() -> Planned:
        planned = await plan()
        if planned.writes or planned.guards:
            await store.commit(planned.writes, planned.guards)
        return planned

    return await commit_retrying(store, attempt)


def check_if_match(current: Stored | None, if_match: int | None, type: str, id: str) -> None:
    """412 unless ``If-Match`` (when given) names the current, undeleted version."""
    if if_match is None:
        return
    have = current.version if current is not None and not current.deleted else None
    if have != if_match:
        raise precondition_failed(
            f"If-Match W/\"{if_match}\" does not match the current version of {type}/{id} ({have or 'none'})",
            "If-Match")


def check_type(type: str) -> None:
    if type not in search_params.resource_types():
        raise not_found(f"Resource type '{type}' is not a FHIR R4 resource type")


def check_id(id: str, expression: str = "id") -> None:
    if not ID_RE.match(id):
        raise invalid(f"'{id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", expression)


def accept(body: object, type: str | None, max_depth: int, allow_unknown: bool = False) -> dict:
    """Check that ``body`` is a resource of ``type`` (any type if None) and valid FHIR R4."""
    if not isinstance(body, dict):
        raise structure("The body must be a JSON object holding a FHIR resource")
    rtype = body.get("resourceType")
    if not isinstance(rtype, str):
        raise invalid("The resource has no resourceType", "resourceType")
    if type is not None and rtype != type:
        raise invalid(f"The body is a {rtype} but the URL names {type}", "resourceType")
    if rtype not in search_params.resource_types():
        raise invalid(f"'{rtype}' is not a FHIR R4 resource type", "resourceType")
    if "id" in body:
        if not isinstance(body["id"], str):
            raise invalid("id must be a string", f"{rtype}.id")
        check_id(body["id"], f"{rtype}.id")
    validate(body, max_depth=max_depth, allow_unknown=allow_unknown)
    return body


def now_instant() -> str:
    """The current time as a FHIR instant in UTC with microseconds (meta.lastUpdated)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_depth(value: object, max_depth: int, expression: str) -> None:
    """400 when ``value`` nests objects and arrays more than ``max_depth`` deep.

    For request documents that are not resources (patches): nothing may recurse into them (copy,
    patch, validate) before this check, or a deep enough document exhausts the Python stack.
    """
    level = [value]
    for _ in range(max_depth + 1):
        inner = []
        for v in level:
            if isinstance(v, dict):
                inner.extend(v.values())
            elif isinstance(v, list):
                inner.extend(v)
        if not inner:
            return
        level = inner
    raise too_costly(f"The document nests deeper than {max_depth} levels", expression)


def new_id() -> str:
    return str(uuid.uuid4())


def new_version(resource: dict, id: str, version: int, method: str, now: str | None = None, *,
                checked: bool = True) -> Write:
    """Stamp ``resource`` with id, meta.versionId, meta.lastUpdated; index it; make the Write.

    Every write passes here, so here ``check_profiles`` runs; the interactions pass
    ``checked=False`` and call it themselves right after their access check."""
    if checked:
        check_profiles(resource, id)
    now = now or now_instant()
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now
    stamped = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    stamped.update((k, v) for k, v in resource.items() if k not in ("resourceType", "id", "meta"))
    return Write(
        type=resource["resourceType"], id=id, version=version, last_updated=now,
        json=orjson.dumps(stamped), index=extract(stamped), expect=version - 1, method=method,
    )


def check_profiles(resource: dict, id: str) -> None:
    """Our own artifacts stay read-only (405, ``profiles.artifacts.guard``), a resource that
    claims a profile of ours must conform to it (422, ``profiles.validator``), and an
    Organization's consultation deadline policy must stay within the regulation (422,
    ``operations.consult.deadline.check_policy``)."""
    artifacts.guard(resource, id)
    profile_validator.check(resource)
    if resource.get("resourceType") == "Organization" and resource.get("extension"):
        from operations.consult.deadline import check_policy  # operations build on this module

        check_policy(resource)


def deletion(current: Stored, now: str | None = None) -> Write:
    now = now or now_instant()
    return Write(
        type=current.type, id=current.id, version=current.version + 1, last_updated=now, json=b"",
        index=None, expect=current.version, method="DELETE", deleted=True,
    )


def as_stored(w: Write) -> Stored:
    return Stored(w.type, w.id, w.version, w.last_updated, w.deleted, w.json, w.method)


async def commit_retrying(store: Store, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` (read, decide, commit) again while a concurrent writer wins the race.

    After the first lost race each retry waits a random, growing delay (at most ``BACKOFF_MAX``
    seconds), so writers contending for one resource spread out instead of colliding every round.
    """
    for n in range(RETRIES):
        try:
            return await attempt()
        except VersionConflict:
            if n:
                await asyncio.sleep(random.uniform(0, min(BACKOFF_MAX, 0.0005 * 2**n)))
    raise conflict("The resource is being changed by other requests at the same time; try again")
