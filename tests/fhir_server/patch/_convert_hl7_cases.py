"""One-off generator for the patch engines' test data files (run by hand, not by pytest).

    python tests/fhir_server/patch/_convert_hl7_cases.py [--shared ../shared]

Reads (never at test time) the HL7 test cases in ``<shared>/fhir-test-cases/r4/patch/``
and writes:

* ``tests/fhir_server/patch/data/fhirpath_patch_cases.json``: the FHIRPath Patch cases of
  ``fhir-patch-tests.xml`` converted from FHIR XML to FHIR JSON
  (``[{name, mode, input, diff, output | error}]``);
* ``tests/fhir_server/patch/data/json_patch_cases.json``: a verbatim copy of
  ``json-patch-tests.json``.

The FHIR XML -> JSON conversion is generic, driven by the server's R4 element definitions
(``fhir_server.patch.r4_model`` over ``fhir_server.validation.definitions``): primitives carry
their value in the ``value`` attribute (``id``/``extension`` go to the ``_name`` sidecar),
``id``/``url`` attributes of complex elements become properties, repeating elements (max > 1)
become arrays, ``Narrative.div`` is serialised XHTML, and booleans, integers and decimals get
their JSON types.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make fhir_server importable

from fhir_server.patch import r4_model  # noqa: E402
from fhir_server.validation import definitions  # noqa: E402

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"


# --------------------------------------------------------------------------- XML -> JSON
class XmlToJson:
    def member(self, base: str, name: str) -> tuple[str, str, bool]:
        """(element path, concrete type, repeating) of XML child ``name`` under ``base``."""
        _, info, typ = r4_model.resolve_key(base, name)
        if info is None:
            raise KeyError(f"unknown element {base}.{name}")
        if typ is None:
            raise KeyError(f"type of {base}.{name} not allowed or not known")
        return info.path, typ, info.repeating

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
            elif r4_model.is_primitive(typ):
                value = _primitive(ch.get("value"), typ)
                side = self.complex(ch, "Element") or None
            elif typ == "Resource":
                inner = [c for c in ch if isinstance(c.tag, str)]
                value, side = self.resource(inner[0]), None
            else:
                child_base = path if typ in r4_model.BACKBONE else typ
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
    kind = definitions.primitive(typ)["json"]
    if kind == "boolean":
        return raw == "true"
    if kind == "integer":
        return int(raw)
    if kind == "decimal":
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    return raw


def _xhtml(el: ET.Element) -> str:
    ET.register_namespace("", XHTML_NS)
    el = copy.deepcopy(el)
    el.tail = None
    return ET.tostring(el, encoding="unicode")


def convert_cases(xml_path: pathlib.Path) -> list[dict]:
    conv = XmlToJson()
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
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    cases = convert_cases(shared / "fhir-test-cases/r4/patch/fhir-patch-tests.xml")
    (data / "fhirpath_patch_cases.json").write_text(
        json.dumps(cases, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    src = shared / "fhir-test-cases/r4/patch/json-patch-tests.json"
    json.loads(src.read_text(encoding="utf-8"))  # must be valid JSON
    (data / "json_patch_cases.json").write_bytes(src.read_bytes())
    print(f"{len(cases)} FHIRPath Patch cases")


if __name__ == "__main__":
    main()
