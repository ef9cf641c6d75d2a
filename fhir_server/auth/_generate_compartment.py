"""Generate the Patient compartment tables from the R4 CompartmentDefinition.

    python -m fhir_server.auth._generate_compartment [../shared/fhir-r4]

Writes
- ``_generated_patient_compartment.json``: resource type -> the search parameters that put a
  resource in a patient's compartment (types with none are left out: never in it);
- ``profiles/searchparameter-compartment.json``: our SearchParameter ``_compartment`` (reference
  to Patient), the union of those parameters' expressions, so every store indexes compartment
  membership and a patient-limited search is one indexed clause.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from profiles import CANONICAL

OUT = Path(__file__).with_name("_generated_patient_compartment.json")
PARAMS = Path(__file__).resolve().parents[1] / "search" / "_generated_params.json"
SEARCH_PARAMETER = Path(__file__).resolve().parents[2] / "profiles" / "searchparameter-compartment.json"


def main(source: str = "../shared/fhir-r4") -> None:
    definition = json.loads((Path(source) / "compartmentdefinition-patient.json").read_text())
    table = {r["code"]: r["param"] for r in definition["resource"] if r.get("param")}
    OUT.write_text(json.dumps({"url": definition["url"], "params": table}, indent=1, sort_keys=True) + "\n")
    params = json.loads(PARAMS.read_text())["params"]
    expressions = [params[t][p]["expression"] for t in sorted(table) for p in table[t]]
    resource = {
        "resourceType": "SearchParameter",
        "id": "compartment",
        "url": f"{CANONICAL}/SearchParameter/compartment",
        "version": "0.1.0",
        "name": "Compartment",
        "status": "active",
        "description": "The patients in whose compartment (R4 CompartmentDefinition Patient) a resource is: "
                       "the union of that definition's parameters. Used by access control to keep "
                       "patient-limited tokens inside their patient's compartment.",
        "code": "_compartment",
        "base": sorted(table),
        "type": "reference",
        "expression": " | ".join(expressions),
        "target": ["Patient"],
    }
    SEARCH_PARAMETER.write_text(json.dumps(resource, indent=1) + "\n")
    print(f"{len(table)} resource types -> {OUT}, {SEARCH_PARAMETER}")


if __name__ == "__main__":
    main(*sys.argv[1:])
