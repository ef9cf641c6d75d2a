"""Which consultation a resource belongs to, stamped on it at write time as an access tag.

A consultation is a ServiceRequest whose ``category`` holds a consultation kind
(``{CANONICAL}/CodeSystem/consultation-kind``). The request and every resource of a
participation-scoped type (``SCOPED``) that references it, or references a resource of that
consultation (its Task, a message, a report...), carry the tag
``{CANONICAL}/CodeSystem/access|ServiceRequest/<id>``; other resources of those types carry
``...|open``. Clients cannot set or remove these tags: the server replaces them on every write.
Search and read of ``SCOPED`` types then filter on ``_tag``, an index every store has.
"""

from __future__ import annotations

import orjson

from profiles import CANONICAL

ACCESS = f"{CANONICAL}/CodeSystem/access"
KIND = f"{CANONICAL}/CodeSystem/consultation-kind"
OPEN = "open"
# Types whose resources are visible only to a consultation's participants when they belong to one.
SCOPED = frozenset({"ServiceRequest", "Task", "Communication", "CommunicationRequest", "DiagnosticReport",
                    "Composition", "DocumentReference", "Media", "Binary", "Provenance", "Appointment"})
_LINK_TYPES = frozenset({"ServiceRequest", "Task", "Communication", "DiagnosticReport", "Composition"})


def is_consultation(resource: dict) -> bool:
    return resource.get("resourceType") == "ServiceRequest" and any(
        c.get("system") == KIND for cat in resource.get("category") or () if isinstance(cat, dict)
        for c in cat.get("coding") or () if isinstance(c, dict))


def tag_of(resource: dict) -> str | None:
    """The access tag's code on a resource as stored, None when it has none."""
    for t in (resource.get("meta") or {}).get("tag") or ():
        if isinstance(t, dict) and t.get("system") == ACCESS:
            return t.get("code")
    return None


def _references(value, out: list[str]) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            out.append(ref)
        for v in value.values():
            if isinstance(v, (dict, list)):
                _references(v, out)
    elif isinstance(value, list):
        for v in value:
            _references(v, out)


async def stamp(store, resource: dict, id: str) -> None:
    """Set the access tag of a resource about to be written as ``id`` (in place)."""
    type = resource.get("resourceType")
    meta = resource.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("tag"), list):
        meta["tag"] = [t for t in meta["tag"] if not (isinstance(t, dict) and t.get("system") == ACCESS)]
        if not meta["tag"]:
            del meta["tag"]
    if type not in SCOPED:
        return
    code = await _consultation_of(store, resource, id)
    meta = resource.setdefault("meta", {})
    meta.setdefault("tag", []).append({"system": ACCESS, "code": code or OPEN})


async def _consultation_of(store, resource: dict, id: str) -> str | None:
    if is_consultation(resource):
        return f"ServiceRequest/{id}"
    refs: list[str] = []
    _references({k: v for k, v in resource.items() if k not in ("meta", "contained", "text")}, refs)
    for ref in dict.fromkeys(refs):
        parts = ref.split("/")
        if len(parts) < 2:
            continue
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        rtype, rid = parts[-2], parts[-1]
        if rtype not in _LINK_TYPES:
            continue
        target = await store.read(rtype, rid)
        if target is None or target.deleted:
            continue
        code = tag_of(orjson.loads(target.json))
        if code and code != OPEN:
            return code
    return None
