"""Rewriting references before a write: bundle-local fullUrls and conditional references.

``Patient?identifier=sys|val`` must match exactly one resource (else 404 / 412); a
``urn:uuid:`` must name an entry of the same Bundle. Resolved references are plain ``Type/id``.
"""

from __future__ import annotations

import orjson

from fhir_server.errors import invalid, multiple_matches, not_found
from fhir_server.interactions.conditional import criteria, matches
from fhir_server.services import Services


async def resolve_references(svc: Services, resource: dict, urls: dict[str, str], where: str,
                             cache: dict[str, str] | None = None) -> dict:
    """``resource`` with its references rewritten: a copy when any changes, else ``resource``
    itself (most resources: copying every one costs more than the rest of a bulk load).
    ``cache`` is shared across calls."""
    needed = {ref for ref in _references(resource) if _needs_rewrite(ref, urls)}
    if not needed:
        return resource
    cache = {} if cache is None else cache
    targets = {}
    for ref in needed:
        if ref in urls:
            targets[ref] = urls[ref]
        elif ref.startswith(("urn:uuid:", "urn:oid:")):
            raise invalid(f"Reference '{ref}' names no entry of this Bundle", where)
        else:
            if ref not in cache:
                cache[ref] = await _conditional_target(svc, ref, where)
            targets[ref] = cache[ref]
    copy = orjson.loads(orjson.dumps(resource))
    _rewrite(copy, targets)
    return copy


def _needs_rewrite(ref: str, urls: dict[str, str]) -> bool:
    return ref in urls or ref.startswith(("urn:uuid:", "urn:oid:")) or (
        "?" in ref and not ref.startswith(("http://", "https://")))


def _references(node):
    """Every Reference.reference string in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            elif isinstance(value, (dict, list)):
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                yield from _references(item)


def _rewrite(node, targets: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value in targets:
                    node[key] = targets[value]
            elif isinstance(value, (dict, list)):
                _rewrite(value, targets)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _rewrite(item, targets)


async def _conditional_target(svc: Services, ref: str, where: str) -> str:
    type, _, qs = ref.partition("?")
    found = await matches(svc, criteria(type, qs, "reference"))
    if not found:
        raise not_found(f"Conditional reference '{ref}' matches no resource", where)
    if len(found) > 1:
        raise multiple_matches(f"Conditional reference '{ref}' matches more than one resource", where)
    return f"{type}/{found[0].id}"
