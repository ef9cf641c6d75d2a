"""Generate ``_generated_structure.json.gz`` from the FHIR R4 definitions.

Run from the project root (needs ``../shared/fhir-r4``; the server never reads it)::

    python -m fhir_server.validation._generate_structure [--src DIR]

Output (gzip, sorted keys, deterministic)::

    {"fhirVersion": "4.0.1",
     "primitives": {name: {"json": "string"|"boolean"|"integer"|"decimal", "base"?: str,
                           "regex": str|None, "maxLength": int|None, "min"/"max": int}},
     "types": {name: {"kind": "complex-type"|"resource"|"backbone",
                      "abstract": bool, "base"?: str,
                      "elements": {name: {"types": [...], "min": int, "max": "*"|int,
                                          "choice"?: true, "contentRef"?: str,
                                          "profile"?: str, "binding"?: [codes]}}}}}

Backbone elements become their own types named by path (``Observation.component``);
a ``contentReference`` (``#Questionnaire.item``) resolves to that backbone type.
``base`` is the type a type specialises or constrains (``baseDefinition``: ``Age`` ->
``Quantity``, ``id`` -> ``string``, ``Patient`` -> ``DomainResource``; none for ``Element``
and ``Resource``); a backbone type's base is its element's declared type (``BackboneElement``,
or ``Element`` inside data types such as ``Timing.repeat``). ``types`` are the R4 type codes;
``profile`` names the constrained type a (non-choice) element is profiled to
(``SimpleQuantity`` for ``Observation.referenceRange.low``, a ``Quantity``).
``binding`` lists the allowed codes of a ``code`` element bound ``required`` to a value
set that is a plain enumeration (concept lists / whole complete code systems, no filters).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_generated_structure.json.gz"
DEFAULT_SRC = HERE.parents[2] / "shared" / "fhir-r4"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
PROFILE_TYPES = {
    "http://hl7.org/fhir/StructureDefinition/SimpleQuantity": "SimpleQuantity",
    "http://hl7.org/fhir/StructureDefinition/MoneyQuantity": "MoneyQuantity",
}
INT_RANGES = {
    "integer": (-2147483648, 2147483647),
    "positiveInt": (1, 2147483647),
    "unsignedInt": (0, 2147483647),
}
MAX_BINDING_CODES = 1000


def _load(src: Path, name: str) -> list[dict]:
    with open(src / name, encoding="utf-8") as f:
        return [e["resource"] for e in json.load(f)["entry"]]


# ---------------------------------------------------------------- value sets


class _Terminology:
    def __init__(self, resources: list[dict]):
        self.vs = {r["url"]: r for r in resources if r["resourceType"] == "ValueSet"}
        self.cs = {r["url"]: r for r in resources if r["resourceType"] == "CodeSystem"}
        self._cache: dict[str, frozenset | None] = {}

    def codes(self, url: str) -> list[str] | None:
        found = self._vs_codes(url.split("|")[0], set())
        if found is None or not found or len(found) > MAX_BINDING_CODES:
            return None
        return sorted(found)

    def _cs_codes(self, url: str) -> set[str] | None:
        cs = self.cs.get(url)
        if cs is None or cs.get("content") != "complete":
            return None
        out: set[str] = set()
        stack = list(cs.get("concept", []))
        while stack:
            c = stack.pop()
            out.add(c["code"])
            stack.extend(c.get("concept", []))
        return out

    def _part(self, part: dict, seen: set) -> set[str] | None:
        if "filter" in part:
            return None
        sets: list[set[str]] = []
        for ref in part.get("valueSet", []):
            got = self._vs_codes(ref.split("|")[0], seen)
            if got is None:
                return None
            sets.append(set(got))
        if "concept" in part:
            sets.append({c["code"] for c in part["concept"]})
        elif "system" in part:
            got = self._cs_codes(part["system"])
            if got is None:
                return None
            sets.append(got)
        if not sets:
            return None
        out = sets[0]
        for s in sets[1:]:
            out = out & s  # valueSet + system in one include: intersection
        return out

    def _vs_codes(self, url: str, seen: set) -> frozenset | None:
        if url in self._cache:
            return self._cache[url]
        if url in seen:
            return None
        vs = self.vs.get(url)
        if vs is None:
            return None
        seen = seen | {url}
        compose = vs.get("compose") or {}
        result: set[str] | None = set()
        for part in compose.get("include", []):
            got = self._part(part, seen)
            if got is None:
                result = None
                break
            result |= got
        if result is not None:
            for part in compose.get("exclude", []):
                got = self._part(part, seen)
                if got is None:
                    result = None
                    break
                result -= got
        if result is None and "expansion" in vs and "contains" in vs["expansion"]:
            result = {c["code"] for c in vs["expansion"]["contains"] if "code" in c}
        out = frozenset(result) if result else None
        self._cache[url] = out
        return out


# ---------------------------------------------------------------- structures


def _type_code(t: dict) -> str:
    code = t["code"]
    for ext in t.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return ext.get("valueUrl") or ext.get("valueUri")
    return SYSTEM_TYPES.get(code, code)


def _base_name(sd: dict) -> str:
    return sd["baseDefinition"].rsplit("/", 1)[1]


def _primitive(sd: dict) -> dict:
    value = next(e for e in sd["snapshot"]["element"] if e["path"].endswith(".value"))
    regex = None
    for ext in value["type"][0].get("extension", []):
        if ext["url"] == REGEX_EXT:
            regex = ext["valueString"]
    name = sd["id"]
    json_kind = {"boolean": "boolean", "decimal": "decimal"}.get(name, "string")
    out: dict = {"json": json_kind, "regex": regex, "maxLength": value.get("maxLength")}
    if sd.get("baseDefinition"):
        out["base"] = _base_name(sd)
    if name in INT_RANGES:
        out.update(json="integer", min=INT_RANGES[name][0], max=INT_RANGES[name][1])
    return out


def _in_schema(el: dict, props: set[str] | None) -> bool:
    """Whether a top-level element also exists in the JSON schema of the type."""
    if props is None or el["path"].count(".") != 1:
        return True
    name = el["path"].split(".")[1]
    if name.endswith("[x]"):
        return any(p.startswith(name[:-3]) and p[len(name) - 3:][:1].isupper() for p in props)
    return name in props


def _r4_elements(sd: dict, props: set[str] | None) -> list[dict]:
    """The snapshot elements, minus the non-R4 additions of the @medplum copy.

    That copy adds elements to some snapshots (``Meta.project``, ``Meta.compartment``,
    R5 ``ResearchStudy.label``, ...) and changes a few (``Bundle.entry.response.outcome``
    typed OperationOutcome, R5 ``EvidenceVariable.characteristic``) while the
    differentials stay the published R4 ones. So an element this definition introduces is
    taken from the differential (merged over the snapshot element); inherited ones
    (``id``, ``meta``, ``extension`` ...) come from the snapshot. A few additions are in
    the differential too (``ResearchStudy.studyDesign``): top-level elements must also be
    in the JSON schema (``props``), whose own additions (``Meta.project``) are not in the
    differential.
    """
    snap = sd["snapshot"]["element"]
    if sd.get("derivation") == "constraint":
        return snap
    root = snap[0]["path"]
    diff = {e["path"]: e for e in sd.get("differential", {}).get("element", [])}
    out, dropped = [snap[0]], set()
    for el in snap[1:]:
        if el["path"].rsplit(".", 1)[0] in dropped:
            dropped.add(el["path"])
        elif el["base"]["path"].split(".")[0] != root:
            out.append(el)
        elif el["path"] in diff and _in_schema(el, props):
            out.append({**el, **diff.pop(el["path"])})
        else:
            dropped.add(el["path"])
    for path, el in diff.items():
        if path != root and path.rsplit(".", 1)[0] not in dropped and _in_schema(el, props):
            out.append({"min": 0, "max": "1", **el})
    out.sort(key=lambda e: e["path"].count("."))  # parents before children
    return out


def _structure(sd: dict, term: _Terminology, types: dict, schema: dict) -> None:
    """Add the type of ``sd`` and its backbone types to ``types``."""
    props = schema.get(sd["id"], {}).get("properties")
    elements = _r4_elements(sd, set(props) if props else None)
    root = elements[0]["path"]
    name = sd["id"]
    paths = {e["path"] for e in elements}
    has_children = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    kind = "resource" if sd["kind"] == "resource" else sd["kind"]
    types[name] = {"kind": kind, "abstract": bool(sd.get("abstract")), "elements": {}}
    if sd.get("baseDefinition"):
        types[name]["base"] = _base_name(sd)

    def owner(path: str) -> str:
        parent = path.rsplit(".", 1)[0]
        return name if parent == root else name + parent[len(root):]

    for el in elements[1:]:
        if el.get("sliceName") or el["max"] == "0":
            continue
        path = el["path"]
        tname = owner(path)
        ename = path.rsplit(".", 1)[1]
        spec: dict = {"min": el["min"], "max": "*" if el["max"] == "*" else int(el["max"])}
        if "contentReference" in el:
            ref = el["contentReference"].lstrip("#")
            ref_type = name + ref[len(root):] if ref.startswith(root + ".") else ref
            spec.update(types=[ref_type], contentRef=ref_type)
        elif path in has_children:
            backbone = name + path[len(root):]
            declared = [t["code"] for t in el.get("type", [])]
            if declared not in (["BackboneElement"], ["Element"]):
                raise SystemExit(f"element {path} has children but is typed {declared}")
            types[backbone] = {"kind": "backbone", "abstract": False, "base": declared[0], "elements": {}}
            spec["types"] = [backbone]
        else:
            codes = []
            for t in el.get("type", []):
                code = _type_code(t)
                if not ename.endswith("[x]"):
                    for prof in t.get("profile", []):
                        if prof in PROFILE_TYPES:
                            spec["profile"] = PROFILE_TYPES[prof]
                codes.append(code)
            if kind == "resource" and ename == "id" and path.count(".") == 1:
                codes = ["id"]  # R4 snapshots say string; the spec (and JSON schema) say id
            spec["types"] = codes
        if ename.endswith("[x]"):
            ename = ename[:-3]
            spec["choice"] = True
        binding = el.get("binding")
        if binding and binding.get("strength") == "required" and spec["types"] == ["code"]:
            codes = term.codes(binding.get("valueSet", ""))
            if codes:
                spec["binding"] = codes
        types[tname]["elements"][ename] = spec


def generate(src: Path) -> dict:
    type_sds = _load(src, "profiles-types.json")
    res_sds = [r for r in _load(src, "profiles-resources.json") if r["resourceType"] == "StructureDefinition"]
    with open(src / "fhir.schema.json", encoding="utf-8") as f:
        schema = json.load(f)["definitions"]
    term = _Terminology(_load(src, "valuesets.json") + _load(src, "v3-codesystems.json"))
    primitives: dict = {}
    types: dict = {}
    for sd in type_sds + res_sds:
        if sd["kind"] == "logical" or sd.get("fhirVersion", "4.0.1") != "4.0.1":
            continue  # MetadataResource; SubscriptionStatus (an R4B resource in that copy)
        if sd["kind"] == "primitive-type":
            primitives[sd["id"]] = _primitive(sd)
            continue
        _structure(sd, term, types, schema)
    for t in types.values():  # sanity: every referenced type exists
        for ename, spec in t["elements"].items():
            for code in spec["types"] + [spec.get("profile", "Resource")]:
                if code not in types and code not in primitives and code != "Resource":
                    raise SystemExit(f"unknown type {code} for element {ename}")
    for name, t in [*types.items(), *primitives.items()]:  # sanity: ancestry is closed and acyclic
        seen = {name}
        while "base" in t:
            if t["base"] in seen or (t["base"] not in types and t["base"] not in primitives):
                raise SystemExit(f"bad base {t['base']} of {name}")
            seen.add(t["base"])
            t = types.get(t["base"]) or primitives[t["base"]]
    return {"fhirVersion": "4.0.1", "primitives": primitives, "types": types}


def write(table: dict, out: Path = OUT) -> bytes:
    raw = json.dumps(table, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    out.write_bytes(buf.getvalue())
    return raw


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    table = generate(args.src)
    raw = write(table, args.out)
    bound = sum(1 for t in table["types"].values() for e in t["elements"].values() if "binding" in e)
    print(f"{args.out}: {len(table['types'])} types, {len(table['primitives'])} primitives, "
          f"{bound} bound code elements, {len(raw)} bytes raw, {args.out.stat().st_size} gzipped")


if __name__ == "__main__":
    main()
