"""Generate ``_generated_params.json``: every R4 SearchParameter per resource type.

Run from the repository root:  python -m fhir_server.search._generate_params [search-parameters.json]
(default ``../shared/fhir-r4/search-parameters.json``). The output holds:

- ``resourceTypes``: the concrete R4 resource types;
- ``params``: {type: {code: {type, expression, url, target, modifier, comparator, multipleOr,
  multipleAnd, component, xpathUsage}}}; a multi-type expression is cut to the union branches
  that start with this type (or with Resource/DomainResource); absent fields are left out.

Resource types and the element types the expressions are compiled against (to report what the
compiler handles) come from the server's R4 element definitions
(``fhir_server.validation.definitions``). ``search-parameters.json`` also carries a SearchParameter
of another FHIR version (R5's ``DeviceDefinition-classification``, on an element R4 does not have):
only R4 (4.0.1) parameters are kept. The server reads only the output, never ../shared.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from fhir_server.search.fhirpath_compile import ABSTRACT_ROOTS, Unsupported, compile_expression
from fhir_server.search.fhirpath_parse import split_union
from fhir_server.search.params import element_types
from fhir_server.validation import definitions

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("_generated_params.json")
FIELDS = ("modifier", "comparator", "multipleOr", "multipleAnd", "xpathUsage")
FHIR_VERSION = "4.0.1"


def _entries(path: Path) -> list[dict]:
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def resource_types() -> tuple[list[str], set[str]]:
    """Concrete R4 resource types, and those among them that are DomainResources."""
    types = sorted(definitions.resource_types())
    return types, {t for t in types if "DomainResource" in definitions.ancestors(t)}


def restrict(expression: str, rtype: str) -> str:
    """Keep the union branches of ``expression`` that apply to ``rtype``.

    A branch rooted at Resource/DomainResource is rewritten to start with ``rtype`` (fhirpathpy
    does not match a Patient against ``Resource.``).
    """
    keep = []
    for branch in split_union(expression):
        head = branch.lstrip("(").split(".", 1)[0].split(" ", 1)[0]
        if head in ABSTRACT_ROOTS:
            at = branch.index(head)
            branch = branch[:at] + rtype + branch[at + len(head) :]
        elif head != rtype and head[:1].isupper():
            continue
        keep.append(branch)
    return " | ".join(keep)


def param_entry(sp: dict, rtype: str) -> dict:
    entry = {"type": sp["type"], "url": sp["url"]}
    if sp.get("expression"):
        entry["expression"] = restrict(sp["expression"], rtype)
    if sp.get("target"):
        entry["target"] = sp["target"]
    for name in FIELDS:
        if name in sp:
            entry[name] = sp[name]
    if sp.get("component"):
        entry["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]]
    return entry


def generate(sp_path: Path) -> tuple[dict, collections.Counter]:
    types, domain = resource_types()
    params: dict[str, dict] = {t: {} for t in types}
    stats = collections.Counter()
    for sp in _entries(sp_path):
        if sp.get("version", FHIR_VERSION) != FHIR_VERSION:
            stats["other version"] += 1
            print(f"skipped {sp['url']}: version {sp['version']}", file=sys.stderr)
            continue
        for base in sp["base"]:
            targets = types if base == "Resource" else sorted(domain) if base == "DomainResource" else [base]
            for rtype in (t for t in targets if t in params):
                params[rtype][sp["code"]] = param_entry(sp, rtype)
    for rtype, by_code in params.items():
        for code, p in by_code.items():
            if not p.get("expression") or p["type"] in ("composite", "special"):
                continue
            try:
                branches = compile_expression(p["expression"], rtype, element_types)
                stats["compiled"] += 1
                stats.update(f"{p['type']}:{b.type}" for b in branches)
            except Unsupported as exc:
                stats["fallback"] += 1
                print(f"fallback {rtype}.{code}: {exc}", file=sys.stderr)
    return {"resourceTypes": types, "params": params}, stats


def main(argv: list[str]) -> None:
    sp_path = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared/fhir-r4/search-parameters.json"
    data, stats = generate(sp_path)
    OUT.write_text(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): compiled {stats['compiled']}, fallback {stats['fallback']}, "
          f"skipped (not R4) {stats['other version']}")
    from fhir_server.search.extract import EMITTERS

    for key, n in sorted(stats.items()):
        if ":" in key:
            indexed = "" if tuple(key.split(":")) in EMITTERS else "  (not indexed)"
            print(f"  {key}: {n}{indexed}")


if __name__ == "__main__":
    main(sys.argv)
