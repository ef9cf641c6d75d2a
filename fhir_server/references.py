"""Rewriting references before a write: bundle-local fullUrls and conditional references.

``Patient?identifier=sys|val`` must match exactly one resource (else 404 / 412); a
``urn:uuid:`` must name an entry of the same Bundle. Resolved references are plain ``Type/id``.
"""

from __future__ import annotations

import copy

from fhir_server.errors import invalid, multiple_matches, not_found
from fhir_server.interactions.conditional import criteria, matches
from fhir_server.services import Services


async def resolve_references(svc: Services, resource: dict, urls: dict[str, str], where: str,
                             cache: dict[str, str] | None = None) -> dict:
    """A deep copy of ``resource`` with its references rewritten; ``cache`` is shared across calls."""
    resource = copy.deepcopy(resource)
    cache = {} if cache is None else cache

    async def target(ref: str) -> str:
        if ref in urls:
            return urls[ref]
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            raise invalid(f"Reference '{ref}' names no entry of this Bundle", where)
        if "?" in ref and not ref.startswith(("http://", "https://")):
            if ref not in cache:
                cache[ref] = await _conditional_target(svc, ref, where)
            return cache[ref]
        return ref

    async def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    node[key] = await target(value)
                elif isinstance(value, (dict, list)):
                    await walk(value)
        elif isinstance(node, list):
            for item in node:
                await walk(item)

    await walk(resource)
    return resource


async def _conditional_target(svc: Services, ref: str, where: str) -> str:
    type, _, qs = ref.partition("?")
    found = await matches(svc, criteria(type, qs, "reference"))
    if not found:
        raise not_found(f"Conditional reference '{ref}' matches no resource", where)
    if len(found) > 1:
        raise multiple_matches(f"Conditional reference '{ref}' matches more than one resource", where)
    return f"{type}/{found[0].id}"
