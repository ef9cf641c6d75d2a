"""``_summary`` and ``_elements``: subsets of a resource, marked with the SUBSETTED tag."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fhir_server.errors import invalid

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
MANDATORY = ("resourceType", "id", "meta")
SUMMARY_MODES = ("true", "text", "data", "count", "false")


@cache
def _summary_elements() -> dict[str, frozenset[str]]:
    raw = json.loads((Path(__file__).parent / "_generated_summary.json").read_text())
    return {t: frozenset(names) for t, names in raw.items()}


def _keeps(name: str, kept: frozenset[str]) -> bool:
    if name in kept or name.startswith("_") and name[1:] in kept:
        return True
    # choice elements: valueQuantity is kept when "value" is
    for i in range(1, len(name)):
        if name[i].isupper():
            return name[:i] in kept
    return False


def subset(resource: dict, summary: str | None, elements: list[str] | None) -> dict:
    """The resource reduced per ``_summary`` / ``_elements``; unchanged when neither applies."""
    if summary in (None, "false") and not elements:
        return resource
    rtype = resource.get("resourceType", "")
    if summary == "text":
        kept = frozenset({"text", "id", "meta"})
    elif summary == "data":
        kept = frozenset(k for k in resource if k != "text")
    elif summary == "true":
        kept = _summary_elements().get(rtype, frozenset())
    elif elements:
        kept = frozenset(elements)
    else:
        return resource
    out = {k: v for k, v in resource.items() if k in MANDATORY or _keeps(k, kept)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def parse_summary(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in SUMMARY_MODES:
        raise invalid(f"_summary must be one of {', '.join(SUMMARY_MODES)}", "_summary")
    return value


def parse_elements(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [e.strip().split(".")[-1] if "." in e else e.strip() for e in value.split(",") if e.strip()]
