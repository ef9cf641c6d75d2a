"""One-off generator for the patch engines' data files (run by hand, not by pytest).

    python tests/fhir_server/patch/_convert_hl7_cases.py [--shared ../shared]

Reads (never at test time) the HL7 test cases in ``<shared>/fhir-test-cases/r4/patch/``
and the R4 StructureDefinitions in ``<shared>/fhir-r4/``, and writes:

* ``tests/fhir_server/patch/data/fhirpath_patch_cases.json``: the FHIRPath Patch cases of
  ``fhir-patch-tests.xml`` converted from FHIR XML to FHIR JSON
  (``[{name, mode, input, diff, output | error}]``);
* ``tests/fhir_server/patch/data/json_patch_cases.json``: a verbatim copy of
  ``json-patch-tests.json``;
* ``fhir_server/patch/r4_elements.json.gz``: the compact R4 element table the FHIRPath Patch
  engine uses at run time (cardinality, types, choice elements; see ``fhir_server.patch.r4_model``).

The FHIR XML -> JSON conversion is generic: primitives carry their value in the ``value``
attribute (``id``/``extension`` go to the ``_name`` sidecar), ``id``/``url`` attributes of
complex elements become properties, repeating elements (``max != "1"`` in the
StructureDefinitions) become arrays, ``Narrative.div`` is serialised XHTML, and booleans,
integers and decimals get their JSON types.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import pathlib
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
INT_TYPES = {"integer", "positiveInt", "unsignedInt", "integer64"}


# --------------------------------------------------------------------------- element table
def _type_code(t: dict) -> str:
    for ext in t.get("extension", []):
        if ext.get("url", "").endswith("structuredefinition-fhir-type"):
            return ext["valueUrl"]
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        return code.rsplit(".", 1)[1].lower()
    return code


def build_table(shared: pathlib.Path) -> dict:
    """{"elements": {path: "<flags><types|#ref>"}, "parents": {type: base}, "primitives": [...]}.

    flags: ``*`` repeating, ``?`` choice (JSON name = path name + type suffix).
    """
    elements: dict[str, str] = {}
    parents: dict[str, str] = {}
    primitives: list[str] = []
    for fname in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((shared / "fhir-r4" / fname).read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
                continue
            if sd["kind"] not in ("primitive-type", "complex-type", "resource"):
                continue
            base = sd.get("baseDefinition", "")
            if base:
                parents[sd["type"]] = base.rsplit("/", 1)[1]
            if sd["kind"] == "primitive-type":
                primitives.append(sd["type"])
                continue
            for el in sd["snapshot"]["element"]:
                path = el["path"]
                if "." not in path:
                    continue
                choice = path.endswith("[x]")
                flags = ("*" if el.get("max") not in ("0", "1") else "") + ("?" if choice else "")
                if "contentReference" in el:
                    body = "#" + el["contentReference"].split("#", 1)[1]
                else:
                    body = "|".join(_type_code(t) for t in el.get("type", []))
                elements[path[:-3] if choice else path] = flags + body
    return {"elements": elements, "parents": parents, "primitives": sorted(primitives)}


# --------------------------------------------------------------------------- XML -> JSON
class XmlToJson:
    def __init__(self, table: dict):
        self.elements = table["elements"]
        self.primitives = set(table["primitives"]) | {"xhtml"}

    def member(self, base: str, name: str) -> tuple[str, str, bool]:
        """(element path, concrete type, repeating) of XML child ``name`` under ``base``."""
        spec = self.elements.get(f"{base}.{name}")
        if spec is not None and "?" not in spec:
            return self._resolve(f"{base}.{name}", spec, None)
        for i in range(len(name) - 1, 0, -1):
            if name[i].isupper():
                path = f"{base}.{name[:i]}"
                spec = self.elements.get(path)
                if spec and "?" in spec:
                    return self._resolve(path, spec, name[i:])
        raise KeyError(f"unknown element {base}.{name}")

    def _resolve(self, path: str, spec: str, suffix: str | None) -> tuple[str, str, bool]:
        rep = spec.startswith("*")
        body = spec.lstrip("*?")
        if body.startswith("#"):
            return body[1:], "BackboneElement", rep
        types = body.split("|")
        if suffix is not None:
            low = suffix[0].lower() + suffix[1:]
            t = low if low in types else suffix
            if t not in types:
                raise KeyError(f"type {suffix} not allowed for {path}")
            return path, t, rep
        return path, types[0], rep

    def resource(self, el: ET.Element) -> dict:
        rt = _local(el.tag)
        return {"resourceType": rt, **self.complex(el, rt)}

    def complex(self, el: ET.Element, base: str) -> dict:
        out: dict = {}
        for attr in ("id", "url"):
            if el.get(attr) is not None:
                out[attr] = el.get(attr)
        collected: dict[str, tuple[bool, list]] = {}
        for ch in el:
            if not isinstance(ch.tag, str):
                continue
            name = _local(ch.tag)
            path, typ, rep = self.member(base, name)
            if typ == "xhtml":
                value, side = _xhtml(ch), None
            elif typ in self.primitives:
                value = _primitive(ch.get("value"), typ)
                side = self.complex(ch, "Element") or None
            elif typ == "Resource":
                inner = [c for c in ch if isinstance(c.tag, str)]
                value, side = self.resource(inner[0]), None
            else:
                child_base = path if typ in ("BackboneElement", "Element") else typ
                value, side = self.complex(ch, child_base), None
            collected.setdefault(name, (rep, []))[1].append((value, side))
        for name, (rep, items) in collected.items():
            values = [v for v, _ in items]
            sides = [s for _, s in items]
            if rep:
                if any(v is not None for v in values):
                    out[name] = values
                if any(s is not None for s in sides):
                    out["_" + name] = sides
            else:
                if len(items) > 1:
                    raise ValueError(f"{base}.{name} repeats but max is 1")
                if values[0] is not None:
                    out[name] = values[0]
                if sides[0] is not None:
                    out["_" + name] = sides[0]
        return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _primitive(raw: str | None, typ: str):
    if raw is None:
        return None
    if typ == "boolean":
        return raw == "true"
    if typ in INT_TYPES:
        return int(raw)
    if typ == "decimal":
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    return raw


def _xhtml(el: ET.Element) -> str:
    ET.register_namespace("", XHTML_NS)
    el = copy.deepcopy(el)
    el.tail = None
    return ET.tostring(el, encoding="unicode")


def convert_cases(xml_path: pathlib.Path, table: dict) -> list[dict]:
    conv = XmlToJson(table)
    cases = []
    for case in ET.parse(xml_path).getroot():
        if not isinstance(case.tag, str) or case.tag != "case":
            continue
        out: dict = {"name": case.get("name"), "mode": case.get("mode")}
        for part in case:
            tag = _local(part.tag)
            if tag == "error":
                out["error"] = part.get("msg")
                continue
            inner = [c for c in part if isinstance(c.tag, str)]
            out[tag] = conv.resource(inner[0])
        cases.append(out)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    shared = pathlib.Path(ap.parse_args().shared)
    table = build_table(shared)
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    cases = convert_cases(shared / "fhir-test-cases/r4/patch/fhir-patch-tests.xml", table)
    (data / "fhirpath_patch_cases.json").write_text(
        json.dumps(cases, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    src = shared / "fhir-test-cases/r4/patch/json-patch-tests.json"
    json.loads(src.read_text(encoding="utf-8"))  # must be valid JSON
    (data / "json_patch_cases.json").write_bytes(src.read_bytes())
    raw = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    (REPO / "fhir_server/patch/r4_elements.json.gz").write_bytes(gzip.compress(raw, 9, mtime=0))
    print(f"{len(cases)} FHIRPath Patch cases, {len(table['elements'])} R4 elements")


if __name__ == "__main__":
    main()
