"""Generate ``_generated_params.json``: every R4 SearchParameter per resource type.

Run from the repository root:  python -m fhir_server.search._generate_params [search-parameters.json]
(default ``../shared/fhir-r4/search-parameters.json``; the StructureDefinitions are read from the
same folder). The output holds:

- ``resourceTypes``: the concrete R4 resource types;
- ``params``: {type: {code: {type, expression, url, target, modifier, comparator, multipleOr,
  multipleAnd, component, xpathUsage}}}; a multi-type expression is cut to the union branches
  that start with this type (or with Resource/DomainResource); absent fields are left out;
- ``elements``: FHIR element types for the compiler, keyed ``"Type.element"`` (``"Type.element[x]"``
  for choice elements; backbone elements are typed by their own path, ``"Observation.component"``):
  every data type element, and the resource elements the R4 expressions use.

The server reads only the output, never ../shared.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from fhir_server.search.fhirpath_compile import ABSTRACT_ROOTS, Unsupported, compile_expression
from fhir_server.search.fhirpath_parse import split_union

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("_generated_params.json")
FIELDS = ("modifier", "comparator", "multipleOr", "multipleAnd", "xpathUsage")
_SYSTEM_TYPES = {"http://hl7.org/fhirpath/System.String": "string"}


def _entries(path: Path) -> list[dict]:
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def resource_types(sds: list[dict]) -> tuple[list[str], set[str]]:
    """Concrete R4 resource types, and those among them that are DomainResources.

    The definitions also carry R4B's SubscriptionStatus (fhirVersion 4.3.0): not an R4 type.
    """
    concrete = [
        sd
        for sd in sds
        if sd.get("kind") == "resource"
        and sd.get("derivation") == "specialization"
        and not sd["abstract"]
        and sd.get("fhirVersion") == "4.0.1"
    ]
    domain = {sd["type"] for sd in concrete if sd["baseDefinition"].endswith("/DomainResource")}
    return sorted(sd["type"] for sd in concrete), domain


def element_table(sds: list[dict]) -> dict[str, list[str]]:
    """``"Type.path"`` (or ``"Type.path[x]"``) -> types, from resource and data type snapshots."""
    table: dict[str, list[str]] = {}
    for sd in sds:
        if sd.get("derivation") != "specialization" and sd["type"] not in ABSTRACT_ROOTS + ("Element",):
            continue
        for el in sd.get("snapshot", {}).get("element", []):
            path = el["path"]
            if "." not in path:
                continue
            if "contentReference" in el:
                types = [el["contentReference"].lstrip("#")]
            else:
                codes = [_SYSTEM_TYPES.get(t["code"], t["code"]) for t in el.get("type", [])]
                types = [path.removesuffix("[x]") if c in ("BackboneElement", "Element") else c for c in codes]
            table[path] = types
    return table


class _Recorder:
    """The compiler's element lookup over the full table, remembering what it used."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table, self.used = table, {}

    def __call__(self, ctx: str, name: str) -> tuple[tuple[str, ...], bool] | None:
        for key, choice in ((f"{ctx}.{name}", False), (f"{ctx}.{name}[x]", True)):
            if key in self.table:
                self.used[key] = self.table[key]
                return tuple(self.table[key]), choice
        return None


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
    folder = sp_path.parent
    sds = [r for r in _entries(folder / "profiles-resources.json") if r["resourceType"] == "StructureDefinition"]
    sds += [r for r in _entries(folder / "profiles-types.json") if r["resourceType"] == "StructureDefinition"]
    types, domain = resource_types(sds)
    params: dict[str, dict] = {t: {} for t in types}
    for sp in _entries(sp_path):
        for base in sp["base"]:
            targets = types if base == "Resource" else sorted(domain) if base == "DomainResource" else [base]
            for rtype in (t for t in targets if t in params):
                params[rtype][sp["code"]] = param_entry(sp, rtype)
    recorder, stats = _Recorder(element_table(sds)), collections.Counter()
    for rtype, by_code in params.items():
        for code, p in by_code.items():
            if not p.get("expression") or p["type"] in ("composite", "special"):
                continue
            try:
                branches = compile_expression(p["expression"], rtype, recorder)
                stats["compiled"] += 1
                stats.update(f"{p['type']}:{b.type}" for b in branches)
            except Unsupported as exc:
                stats["fallback"] += 1
                print(f"fallback {rtype}.{code}: {exc}", file=sys.stderr)
    datatypes = {sd["type"] for sd in sds if sd.get("kind") == "complex-type"}
    for key, value in recorder.table.items():  # all of them, for custom params' expressions
        if key.split(".", 1)[0] in datatypes:
            recorder.used[key] = value
    data = {"resourceTypes": types, "params": params, "elements": dict(sorted(recorder.used.items()))}
    return data, stats


def main(argv: list[str]) -> None:
    sp_path = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared/fhir-r4/search-parameters.json"
    data, stats = generate(sp_path)
    OUT.write_text(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): compiled {stats['compiled']}, fallback {stats['fallback']}")
    from fhir_server.search.extract import EMITTERS

    for key, n in sorted(stats.items()):
        if ":" in key:
            indexed = "" if tuple(key.split(":")) in EMITTERS else "  (not indexed)"
            print(f"  {key}: {n}{indexed}")


if __name__ == "__main__":
    main(sys.argv)
