"""The SearchParameters our implementation guide adds (``profiles/searchparameter-*.json``), in
the shape of the generated R4 table (``fhir_server/search/_generated_params.json``) so the search
engine treats them like R4's own: per base type, the expression cut to that type's branches."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from fhir_server.search.fhirpath_parse import split_union

FOLDER = Path(__file__).parent


@functools.cache
def resources() -> tuple[dict, ...]:
    return tuple(json.loads(p.read_text()) for p in sorted(FOLDER.glob("searchparameter-*.json")))


@functools.cache
def for_type(resource_type: str) -> dict[str, dict]:
    """code -> table entry of our parameters that apply to ``resource_type``."""
    out = {}
    for sp in resources():
        if resource_type not in sp["base"]:
            continue
        branches = [b for b in split_union(sp["expression"])
                    if b.lstrip("(").startswith(resource_type + ".")]
        entry = {"type": sp["type"], "url": sp["url"], "expression": " | ".join(branches)}
        if sp.get("target"):
            entry["target"] = sp["target"]
        out[sp["code"]] = entry
    return out
