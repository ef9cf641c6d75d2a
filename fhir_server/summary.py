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


@cache
def _mandatory(rtype: str) -> frozenset[str]:
    """The top-level elements with min >= 1 (choice elements by their stem), from the validator's table."""
    from fhir_server.validation.structure import _compiled

    t = _compiled()[0].get(rtype)
    if t is None:
        return frozenset()
    return t.required | frozenset(stem for stem, _keys in t.req_choice)


def _keeps(name: str, kept: frozenset[str]) -> bool:
    name = name.removeprefix("_")  # _birthDate (a primitive's id/extensions) goes with birthDate
    if name in kept:
        return True
    # choice elements: valueQuantity is kept when "value" is, multipleBirthInteger when "multipleBirth" is
    return any(name[i].isupper() and name[:i] in kept for i in range(1, len(name)))


def subset(resource: dict, summary: str | None, elements: list[str] | None) -> dict:
    """The resource reduced per ``_summary`` / ``_elements``; unchanged when neither applies."""
    if summary in (None, "false") and not elements:
        return resource
    rtype = resource.get("resourceType", "")
    if summary == "text":
        kept = frozenset({"text", "id", "meta"}) | _mandatory(rtype)
    elif summary == "data":
        kept = frozenset(k for k in resource if k != "text")
    elif summary == "true":
        kept = _summary_elements().get(rtype, frozenset())
    elif elements:
        kept = frozenset(elements) | _mandatory(rtype)  # R4: mandatory elements are always returned
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
