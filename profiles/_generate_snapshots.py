"""Generate the published StructureDefinitions and ValueSets of our implementation guide.

Run from the project root (needs ``../shared/fhir-r4``; the server never reads it)::

    python -m profiles._generate_snapshots          # write the files
    python -m profiles._generate_snapshots --check  # exit 1 when a file differs from what it would write

Writes ``profiles/structuredefinition-<Name>.json`` for each profile and extension of
``_differentials`` (the hand-written differential plus a snapshot: the R4 base definition's
snapshot with the differential merged in, slices inserted after the element they slice, our
invariants appended to the base constraints) and ``profiles/valueset-<id>.json``: one ValueSet
with all codes of each of our CodeSystems, and those of ``_differentials.VALUE_SETS``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from profiles import CANONICAL, PROFILES
from profiles import _differentials as d

SOURCE = PROFILES.parents[1] / "shared" / "fhir-r4"
VERSION = "0.1.0"
DATE = "2026-12-05"
HEADER = {"version": VERSION, "status": "active", "experimental": False, "date": DATE, "publisher": "telemed-fhir"}
_MAX = {"*": float("inf")}


def _base_definitions(source: Path) -> dict[str, dict]:
    out = {}
    for name in ("profiles-resources.json", "profiles-types.json"):
        for entry in json.loads((source / name).read_text())["entry"]:
            r = entry["resource"]
            if r.get("resourceType") == "StructureDefinition":
                out[r["url"]] = r
    return out


def _max(value: str) -> float:
    return _MAX.get(value, None) or float(value)


def _merge(base: dict, diff: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            out["constraint"] = out.get("constraint", []) + copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    out["id"] = diff["id"]
    if out["min"] < base["min"] or _max(out["max"]) > _max(base["max"]):
        raise SystemExit(f"{where}: {diff['id']} widens the base cardinality {base['min']}..{base['max']}")
    return out


def _under_slice(diff: dict, elements: list[dict], extension: dict, where: str) -> list[dict]:
    """A child of an extension slice (``Extension.extension:form.url``): the Extension type's own
    element re-rooted under the slice, inserted after the slice and its other children."""
    parent = diff["id"].rsplit(".", 1)[0]
    name = diff["id"].rsplit(".", 1)[1]
    base = next(e for e in extension["snapshot"]["element"] if e["id"] == f"Extension.{name}")
    base = {**copy.deepcopy(base), "path": diff["path"]}
    at = max(i for i, e in enumerate(elements) if e["id"] == parent or e["id"].startswith(parent + "."))
    elements.insert(at + 1, _merge(base, diff, where))
    return elements


def snapshot(base: dict, differential: list[dict], where: str, extension: dict | None = None) -> list[dict]:
    """The base snapshot with ``differential`` merged in (no slicing beyond extension slices)."""
    elements = copy.deepcopy(base["snapshot"]["element"])
    for diff in differential:
        if ":" in diff["id"].rsplit(".", 1)[0]:
            elements = _under_slice(diff, elements, extension, where)
            continue
        if "sliceName" in diff:
            sliced = diff["path"]
            at = max(i for i, e in enumerate(elements) if e["id"] == sliced or e["id"].startswith(sliced + ":"))
            elements.insert(at + 1, _merge(next(e for e in elements if e["id"] == sliced), diff, where))
            elements[at + 1].pop("slicing", None)
            continue
        at = next((i for i, e in enumerate(elements) if e["id"] == diff["id"]), None)
        if at is None:
            raise SystemExit(f"{where}: {diff['id']} is not an element of {base['type']}")
        elements[at] = _merge(elements[at], diff, where)
    return elements


def structure_definition(header: dict, differential: list[dict], base: dict, extension: dict | None = None) -> dict:
    sd = {"resourceType": "StructureDefinition", "id": header["id"], "url": f"{d.SD}/{header['id']}", **HEADER,
          **{k: v for k, v in header.items() if k != "id"}, "fhirVersion": "4.0.1", "abstract": False,
          "baseDefinition": base["url"], "derivation": "constraint",
          "differential": {"element": differential}}
    sd = {k: sd[k] for k in ("resourceType", "id", "url", "version", "name", "title", "status", "experimental",
                             "date", "publisher", "description", "fhirVersion", "kind", "abstract", "context",
                             "type", "baseDefinition", "derivation", "differential") if k in sd}
    sd["snapshot"] = {"element": snapshot(base, differential, header["id"], extension)}
    return sd


def profile(p: dict, bases: dict[str, dict]) -> dict:
    base = bases[f"{d.FHIR_SD}/{p['type']}"]
    header = {"id": p["name"], "name": p["name"], "title": p["title"], "description": p["description"],
              "kind": "resource", "type": p["type"]}
    return structure_definition(header, p["elements"], base)


def extension(id: str, title: str, description: str, contexts: list[str], value: str | list, binding: dict | None,
              bases: dict[str, dict]) -> dict:
    """A simple extension (``value`` a type name) or a complex one (``value`` its parts:
    (name, type, min, max, short), each a sub-extension whose url is its name)."""
    url = f"{d.SD}/{id}"
    differential = [d.el("Extension", short=title, definition=description)]
    if isinstance(value, str):
        value_el = d.el("Extension.value[x]", min=1, type=[{"code": value}])
        if binding:
            value_el["binding"] = binding
        differential += [d.el("Extension.extension", max="0"), d.el("Extension.url", fixedUri=url), value_el]
    else:
        differential.append(d.el("Extension.extension", slicing={
            "discriminator": [{"type": "value", "path": "url"}], "rules": "open"}))
        for name, type, lo, hi, short in value:
            slice_id = f"Extension.extension:{name}"
            differential += [
                {"id": slice_id, "path": "Extension.extension", "sliceName": name, "short": short, "min": lo,
                 "max": hi},
                {"id": f"{slice_id}.url", "path": "Extension.extension.url", "fixedUri": name},
                {"id": f"{slice_id}.value[x]", "path": "Extension.extension.value[x]", "min": 1,
                 "type": [{"code": type}]}]
        differential += [d.el("Extension.url", fixedUri=url), d.el("Extension.value[x]", max="0")]
    name = "".join(part.capitalize() for part in id.split("-"))
    header = {"id": id, "name": name, "title": title, "description": description, "kind": "complex-type",
              "context": [{"type": "element", "expression": c} for c in contexts], "type": "Extension"}
    base = bases[f"{d.FHIR_SD}/Extension"]
    return structure_definition(header, differential, base, base)


def value_set(id: str, name: str, title: str, description: str, include: dict) -> dict:
    return {"resourceType": "ValueSet", "id": id, "url": f"{CANONICAL}/ValueSet/{id}", **HEADER, "name": name,
            "title": title, "description": description, "compose": {"include": [include]}}


def value_sets() -> list[dict]:
    out = []
    for path in sorted(PROFILES.glob("codesystem-*.json")):
        cs = json.loads(path.read_text())
        out.append(value_set(cs["id"], cs["name"], cs.get("title", cs["name"]),
                             f"All codes of the CodeSystem {cs['url']}.", {"system": cs["url"]}))
    for id, name, title, description, system, codes in d.VALUE_SETS:
        out.append(value_set(id, name, title, description,
                             {"system": system, "concept": [{"code": c} for c in codes]}))
    return out


def build(source: Path = SOURCE) -> dict[str, str]:
    """File name -> content of every file this generator writes."""
    bases = _base_definitions(source)
    resources = [profile(p, bases) for p in d.PROFILES]
    resources += [extension(*e, bases) for e in d.EXTENSIONS]
    files = {f"structuredefinition-{sd['id']}.json": sd for sd in resources}
    files |= {f"valueset-{vs['id']}.json": vs for vs in value_sets()}
    return {name: json.dumps(r, indent=2, ensure_ascii=False) + "\n" for name, r in files.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a file would change")
    args = ap.parse_args(argv)
    stale = []
    for name, text in build(args.source).items():
        path = PROFILES / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    print(("stale: " if args.check else "written: ") + (", ".join(stale) or "none"))
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
