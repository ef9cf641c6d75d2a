"""Generate ``_generated_summary.json``: per R4 resource type, its top-level summary elements.

Run: python -m fhir_server._generate_summary [path/to/profiles-resources.json]
The elements marked ``isSummary`` in the R4 StructureDefinitions are what ``_summary=true``
keeps (besides the mandatory id, meta and resourceType). Choice elements are listed by their
``[x]`` stem, e.g. ``value``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT = HERE.parent.parent / "shared" / "fhir-r4" / "profiles-resources.json"


def main(src: Path) -> None:
    bundle = json.loads(src.read_text())
    out: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource" or sd.get("abstract"):
            continue
        names = set()
        for el in sd["snapshot"]["element"]:
            parts = el["path"].split(".")
            if len(parts) == 2 and el.get("isSummary"):
                names.add(parts[1].removesuffix("[x]"))
        out[sd["type"]] = sorted(names)
    (HERE / "_generated_summary.json").write_text(json.dumps(out, sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
