"""The seeded world of the search correctness tests: a deterministic, varied data set and a
store per adapter holding it.

``build_dataset()`` makes ~150 resources with ``random.Random(SEED)`` from pools that hold the
edge cases of R4 search (http://hl7.org/fhir/R4/search.html): several values per resource,
missing values, dates at year / month / day / second / millisecond precision in various time
zones, Periods open on either end, names with accents and mixed case in Latin and Cyrillic,
identifiers with and without a system (and values holding ``|`` and ``,``), quantities in
mg / g / kg / mmol/L / mg/dL, unit-only and non-UCUM quantities, telecoms, addresses.

Resources reference each other by *label* (``P3``, ``E0``...); ``seed()`` posts them in order
over the REST API and rewrites labels into the ids the server assigned. The ``world`` fixture
(module scope, one per adapter) yields the client, the stored resources and their labels; the
test modules import it.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.tokens import auth
from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.conftest import mongo_store_uri
from tests.fhir_server.search.oracle import Oracle

SEED = 20240503
FHIR_JSON = "application/fhir+json"
HEADERS = {"Content-Type": FHIR_JSON}
STRICT = {"Prefer": "handling=strict"}

MRN = "http://example.org/mrn"
SSN = "urn:oid:2.16.840.1.113883.4.1"
OTHER = "http://other.org/ids"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ACME = "http://acme.org/codes"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

FAMILIES = ["Smith", "smithers", "Ñúñez", "Nunez", "Müller", "MULLER", "Mueller", "Ёлкин", "Елкин",
            "O'Brien", "van der Berg", "García", "Garcia-López", "Zoë", "ÅNGSTRÖM", "Dvořák", "Chloé"]
GIVENS = ["Ann", "anna", "Anaïs", "José", "Jose", "Björn", "Zoë", "Ёжик", "Renée", "Élodie", "élise", "Li"]
CITIES = ["São Paulo", "Sao Paulo", "Zürich", "Zurich", "Montréal", "montreal", "Москва", "Köln", "Kolnhausen"]
BIRTHDATES = ["1980", "1980-03", "1980-03-15", "1979-12-31", "1981-01-01", "2000-02-29", "2000-03", "1999",
              "2024-05-03", "1980-02", "1980-12-31", None, None]
# deceasedDateTime: instants either side of day / year boundaries in several zones, and partial dates
DEATHS = ["2024-05-03T23:30:00-05:00", "2024-05-04T00:30:00+02:00", "2024-05-03T12:00:00Z", "2024-05-03",
          "2024-05", "2024", "2024-05-03T10:00:00.250+00:00", "2023-12-31T23:59:59Z", "2024-01-01T00:00:00+01:00",
          "2024-05-02T22:00:00-02:00", "2024-05-04T00:00:00Z"]
IDENTIFIERS = [
    {"system": MRN, "value": "1001"}, {"system": MRN, "value": "1002"}, {"system": SSN, "value": "1001"},
    {"value": "1001"}, {"value": "A-7"}, {"system": MRN, "value": "a-7"}, {"system": OTHER, "value": "12,5"},
    {"system": MRN, "value": "x|y"},
    {"system": OTHER, "value": "1002",
     "type": {"text": "Sécurité sociale",
              "coding": [{"system": V2_0203, "code": "SS"}, {"system": OTHER, "code": "nir"}]}},
    {"system": MRN, "value": "1003",
     "type": {"text": "Medical record number", "coding": [{"system": V2_0203, "code": "MR"}]}},
]
TELECOMS = [{"system": "phone", "value": "+1 555 0100"}, {"system": "phone", "value": "+1-555-0101"},
            {"system": "email", "value": "ann@example.org"}, {"system": "email", "value": "ANN@example.org"},
            {"system": "fax", "value": "+1 555 0199"}]

# Observation.effective[x]: (choice suffix, value)
EFFECTIVES = [
    ("DateTime", "2024-05-03T10:00:00Z"), ("DateTime", "2024-05-03T10:00:00+02:00"),
    ("DateTime", "2024-05-03T23:30:00-05:00"), ("DateTime", "2024-05-03"), ("DateTime", "2024-05"),
    ("DateTime", "2024"), ("DateTime", "2023-12-31T23:59:59Z"), ("DateTime", "2024-01-01T00:30:00+01:00"),
    ("DateTime", "2024-05-02T23:59:59.999+00:00"), ("DateTime", "2024-06-15T08:00:00+05:30"),
    ("Instant", "2024-05-03T10:00:00.123+02:00"), ("Instant", "2024-05-03T08:00:00.5Z"),
    ("Period", {"start": "2024-05-01", "end": "2024-05-05"}), ("Period", {"start": "2024-05-03T09:00:00Z"}),
    ("Period", {"end": "2024-05-03T09:00:00Z"}), ("Period", {"start": "2024-04", "end": "2024-06"}),
    ("Period", {"start": "2024-05-03T00:00:00+02:00", "end": "2024-05-03T23:00:00+02:00"}),
    ("Period", {"start": "2023-06-01", "end": "2024-05-03T10:00:00Z"}),
    (None, None), (None, None),
]
# (value, code) in UCUM mass units; boundaries of eq5 g = [4.5, 5.5) g and eq5 kg = [4.5, 5.5) kg
MASSES = [(72.5, "kg"), (72500, "g"), (5, "g"), (5000, "mg"), (4.5, "g"), (4500, "mg"), (5.5, "g"), (5499, "mg"),
          (4800, "g"), (5.2, "kg"), (4.8, "kg"), (5200000, "mg"), (0.005, "kg"), (4.49, "g"), (5.4, "g"),
          (5.45, "g"), (5.35, "g"), (5450, "mg"), (0.0054, "kg"), (7, "kg")]
GLUCOSE = [(5.4, "mmol/L"), (5.45, "mmol/L"), (5.35, "mmol/L"), (6.0, "mmol/L"), (3.9, "mmol/L"), (0.0054, "mol/L"),
           (5400, "umol/L"), (97, "mg/dL"), (100, "mg/dL"), (1.0, "g/L")]
PROBABILITIES = [0, 0.1, 0.25, 0.249, 0.35, 0.5, 0.55, 1, 0.05, 0.15, 0.3, 0.2999]
PERIODS = [
    {"start": "2024-05-03T08:00:00Z", "end": "2024-05-03T09:30:00Z"},
    {"start": "2024-05-03T22:00:00-05:00", "end": "2024-05-04T01:00:00-05:00"},
    {"start": "2024-05-01"}, {"end": "2024-05-02"}, {"start": "2024-05", "end": "2024-05"},
    {"start": "2023-12-31T23:00:00Z", "end": "2024-01-01T01:00:00Z"},
    {"start": "2024-05-03T00:00:00+14:00", "end": "2024-05-03T00:00:00-12:00"},
    {"start": "2024"}, {"start": "2024-05-02T10:00:00Z", "end": "2024-05-04T10:00:00Z"}, None,
]
LENGTHS = [(90, "min"), (1.5, "h"), (1, "h"), (60, "min"), (2, "d"), (30, "min"), (0.5, "h")]
URLS = ["http://acme.org/fhir/ValueSet/a", "http://acme.org/fhir/ValueSet/a/b", "http://acme.org/fhir/ValueSet/ab",
        "http://acme.org/fhir", "http://acme.org/fhir/", "http://other.org/fhir/ValueSet/a", "urn:oid:1.2.3",
        "urn:oid:1.2.3.4", "http://acme.org/fhir/ValueSet/A", None, "http://acme-org/fhir/ValueSet/a"]


def _label(kind: str, i: int) -> str:
    return f"{kind}{i}"


def _pick(rng: random.Random, pool: list, k: int) -> list:
    return [copy.deepcopy(rng.choice(pool)) for _ in range(k)]


def _patient(rng: random.Random, i: int) -> dict:
    res: dict[str, Any] = {"resourceType": "Patient"}
    n_names = rng.choices([0, 1, 2], [1, 14, 5])[0]
    names = []
    for _ in range(n_names):
        name: dict[str, Any] = {}
        if rng.random() < 0.9:
            name["family"] = rng.choice(FAMILIES)
        givens = rng.sample(GIVENS, rng.choice([0, 1, 1, 2]))
        if givens:
            name["given"] = givens
        if rng.random() < 0.1:
            name["prefix"] = ["Dr."]
        if rng.random() < 0.15:
            name["text"] = " ".join(givens + [name.get("family", "")]).strip() or "Anonymous"
        if not name:
            name["text"] = "Anonymous"
        names.append(name)
    if names:
        res["name"] = names
    if (g := rng.choice(["male", "female", "female", "other", "unknown", None])) is not None:
        res["gender"] = g
    if (b := rng.choice(BIRTHDATES)) is not None:
        res["birthDate"] = b
    if rng.random() < 0.3:
        res["deceasedDateTime"] = rng.choice(DEATHS)
    ids = []
    for ident in _pick(rng, IDENTIFIERS, rng.choice([0, 1, 1, 2, 3])):
        if ident not in ids:
            ids.append(ident)
    if ids:
        res["identifier"] = ids
    tels = []
    for t in _pick(rng, TELECOMS, rng.choice([0, 1, 2])):
        if t not in tels:
            tels.append(t)
    if tels:
        res["telecom"] = tels
    addresses = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        a: dict[str, Any] = {"city": rng.choice(CITIES)}
        if rng.random() < 0.5:
            a["line"] = [rng.choice(["1 Rue de la Paix", "Hauptstraße 5", "12 Main St"])]
        if rng.random() < 0.4:
            a["postalCode"] = rng.choice(["8001", "H2X 1Y4", "01000-000"])
        addresses.append(a)
    if addresses:
        res["address"] = addresses
    if (a := rng.choice([True, False, None])) is not None:
        res["active"] = a
    return res


def _code(rng: random.Random) -> tuple[str, dict]:
    """(kind, CodeableConcept): kind says which value pool fits the code."""
    kind = rng.choice(["weight", "weight", "weight", "glucose", "glucose", "local", "text"])
    if kind == "weight":
        codings = [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]
        if rng.random() < 0.3:
            codings.append({"system": SNOMED, "code": "27113001", "display": "Body weight (observable entity)"})
        cc: dict[str, Any] = {"coding": codings}
        if rng.random() < 0.4:
            cc["text"] = rng.choice(["Body wéight", "Poids", "weight, measured"])
        return kind, cc
    if kind == "glucose":
        if rng.random() < 0.5:
            return kind, {"coding": [{"system": LOINC, "code": "15074-8",
                                      "display": "Glucose [Moles/volume] in Blood"}]}
        return kind, {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}],
                      "text": "Glucose"}
    if kind == "local":
        return kind, rng.choice([
            {"coding": [{"system": ACME, "code": "29463-7"}]},  # LOINC's code in another system
            {"coding": [{"code": "29463-7", "display": "Weight (no system)"}]},
            {"coding": [{"system": ACME}], "text": "Unclassified"},  # a system without a code
            {"coding": [{"system": ACME, "code": "wt-local", "display": "Weight, local"}]},
        ])
    return kind, {"text": rng.choice(["Weight, patient reported", "Ёлка test", "Poids déclaré"])}


def _quantity(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _observation(rng: random.Random, i: int, n_patients: int, n_encounters: int, n_groups: int) -> dict:
    kind, cc = _code(rng)
    res: dict[str, Any] = {"resourceType": "Observation",
                           "status": rng.choice(["final", "final", "preliminary", "amended", "cancelled"]),
                           "code": cc}
    cat = rng.choice([None, None, ["vital-signs"], ["laboratory"], ["vital-signs", "laboratory"]])
    if cat:
        res["category"] = [{"coding": [{"system": CATEGORY, "code": c}]} for c in cat]
    r = rng.random()
    if r < 0.78:
        res["subject"] = {"reference": f"Patient/{_label('P', rng.randrange(n_patients))}"}
    elif r < 0.84:
        res["subject"] = {"reference": f"Group/{_label('G', rng.randrange(n_groups))}"}
    elif r < 0.94:
        res["subject"] = {"identifier": copy.deepcopy(rng.choice(IDENTIFIERS[:4]))}
    if rng.random() < 0.45:
        res["encounter"] = {"reference": f"Encounter/{_label('E', rng.randrange(n_encounters))}"}
    choice, value = rng.choice(EFFECTIVES)
    if choice:
        res[f"effective{choice}"] = copy.deepcopy(value)
    if rng.random() < 0.85:
        if kind == "weight":
            v, u = rng.choice(MASSES)
            res["valueQuantity"] = _quantity(v, u)
            if rng.random() < 0.1:
                res["valueQuantity"]["unit"] = {"g": "gram", "mg": "milligram", "kg": "kilogram"}[u]
        elif kind == "glucose":
            v, u = rng.choice(GLUCOSE)
            res["valueQuantity"] = _quantity(v, u)
        elif kind == "local":
            res["valueQuantity"] = rng.choice([
                {"value": 5, "unit": "mg"},  # unit only: no system, no code
                {"value": 5000, "unit": "mg"},
                {"value": 5, "unit": "mg", "system": "http://acme.org/units", "code": "mg"},
                {"value": 5.0, "unit": "milligram", "system": UCUM, "code": "mg"},
                {"value": 72, "unit": "kilo"},
            ])
        else:
            res["valueString"] = rng.choice(["Positive", "négatif", "Ölwechsel", "positive result"])
    return res


def _encounter(rng: random.Random, i: int, n_patients: int, n_groups: int) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": rng.choice(["planned", "arrived", "in-progress", "finished", "finished", "cancelled"]),
        "class": {"system": ACT_CODE, "code": rng.choice(["AMB", "IMP", "EMER", "VR"])},
    }
    if rng.random() < 0.5:
        res["type"] = [{"coding": [{"system": SNOMED, "code": rng.choice(["185349003", "270427003", "11429006"])}]}]
    if rng.random() < 0.9:
        res["subject"] = {"reference": f"Patient/{_label('P', rng.randrange(n_patients))}"}
    else:
        res["subject"] = {"reference": f"Group/{_label('G', rng.randrange(n_groups))}"}
    if (p := rng.choice(PERIODS)) is not None:
        res["period"] = copy.deepcopy(p)
    if rng.random() < 0.6:
        v, u = rng.choice(LENGTHS)
        res["length"] = _quantity(v, u)
    return res


def _risk(rng: random.Random, i: int, n_patients: int) -> dict:
    res: dict[str, Any] = {"resourceType": "RiskAssessment", "status": "final",
                           "subject": {"reference": f"Patient/{_label('P', rng.randrange(n_patients))}"}}
    preds = [{"probabilityDecimal": p} for p in rng.sample(PROBABILITIES, rng.choice([0, 1, 2, 3]))]
    if preds:
        res["prediction"] = preds
    if rng.random() < 0.7:
        res["occurrenceDateTime"] = rng.choice(DEATHS)
    return res


@dataclass
class Dataset:
    """Resources in creation order, each with its label; references hold labels."""

    items: list[tuple[str, dict]] = field(default_factory=list)


def build_dataset(seed: int = SEED) -> Dataset:
    rng = random.Random(seed)
    n_patients, n_groups, n_encounters, n_obs, n_risks = 45, 3, 25, 60, 12
    items: list[tuple[str, dict]] = []
    for i in range(n_patients):
        items.append((_label("P", i), _patient(rng, i)))
    for i in range(n_groups):
        items.append((_label("G", i), {"resourceType": "Group", "type": "person", "actual": True,
                                       "name": f"Cohort {i}"}))
    for i in range(n_encounters):
        items.append((_label("E", i), _encounter(rng, i, n_patients, n_groups)))
    for i in range(n_obs):
        items.append((_label("O", i), _observation(rng, i, n_patients, n_encounters, n_groups)))
    for i in range(n_risks):
        items.append((_label("R", i), _risk(rng, i, n_patients)))
    # Hand-written extras after the random ones (so they shift no random draw): values that sit
    # on the boundaries the random pools may miss
    obs, enc, pat = n_obs, n_encounters, n_patients
    for k, death in enumerate(DEATHS):  # every instant of the pools, whatever the draws were
        items.append((_label("P", pat), {"resourceType": "Patient",
                                         "name": [{"family": FAMILIES[k], "given": [GIVENS[k]]}],
                                         "birthDate": BIRTHDATES[k], "deceasedDateTime": death}))
        pat += 1
    items.append((_label("P", pat), {"resourceType": "Patient", "name": [{"family": "Boolean"}],
                                     "deceasedBoolean": True}))
    pat += 1
    for family in ["Under_Score", "100% Pure", "Dot.Com (Ltd)", "Star*"]:  # LIKE / regex metacharacters
        items.append((_label("P", pat), {"resourceType": "Patient", "name": [{"family": family}]}))
        pat += 1
    for k, (choice, value) in enumerate(e for e in EFFECTIVES if e[0]):
        v, u = MASSES[k]
        items.append((_label("O", obs), {"resourceType": "Observation", "status": "final",
                                         "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                                         f"effective{choice}": copy.deepcopy(value), "valueQuantity": _quantity(v, u),
                                         "subject": {"reference": f"Patient/{_label('P', k)}"}}))
        obs += 1
    for k, period in enumerate(p for p in PERIODS if p):
        items.append((_label("E", enc), {"resourceType": "Encounter", "status": "finished",
                                         "class": {"system": ACT_CODE, "code": "IMP"}, "period": copy.deepcopy(period),
                                         "subject": {"reference": f"Patient/{_label('P', k)}"}}))
        enc += 1
    weight = {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]}
    for q in [{"value": 5, "unit": "gram", "system": UCUM, "code": "g"},
              {"value": 4.6, "unit": "kilogram", "system": UCUM, "code": "kg"},
              {"value": 4.55, "unit": "g", "system": UCUM, "code": "g"}]:
        items.append((_label("O", obs), {"resourceType": "Observation", "status": "final", "code": weight,
                                         "valueQuantity": q, "effectiveDateTime": "2024-05-03T10:00:00Z",
                                         "subject": {"reference": "Patient/P0"}}))
        obs += 1
    for minutes in (88, 28, 100):
        items.append((_label("E", enc), {"resourceType": "Encounter", "status": "finished",
                                         "class": {"system": ACT_CODE, "code": "AMB"},
                                         "length": _quantity(minutes, "min"),
                                         "period": {"start": "2024-05-03T10:00:00Z"}}))
        enc += 1
    for i, url in enumerate(URLS):
        vs: dict[str, Any] = {"resourceType": "ValueSet", "status": rng.choice(["draft", "active"]),
                              "name": f"VS{i}"}
        if url:
            vs["url"] = url
        items.append((_label("V", i), vs))
    items += _composite_extras(obs)
    return Dataset(items)


SYSTOLIC, DIASTOLIC, BP_PANEL = "8480-6", "8462-4", "85354-9"
COVID, COVID_AB, DETECTED, NOT_DETECTED = "94500-6", "94309-2", "260373001", "260415000"


def _mmhg(value: float, code: str = "mm[Hg]") -> dict:
    return {"value": value, "unit": "mmHg" if code == "mm[Hg]" else code, "system": UCUM, "code": code}


def _bp(systolic: dict, diastolic: dict | None, subject: str, local: bool = False) -> dict:
    """A blood-pressure panel: each reading in a component of its own (``local``: a second coding)."""
    def coding(code: str, alias: str) -> dict:
        return {"coding": [{"system": LOINC, "code": code}] + ([{"system": ACME, "code": alias}] if local else [])}

    components = [{"code": coding(SYSTOLIC, "sys"), "valueQuantity": systolic}]
    if diastolic is not None:
        components.append({"code": coding(DIASTOLIC, "dia"), "valueQuantity": diastolic})
    else:  # a diastolic component without a quantity: no composite value
        components.append({"code": coding(DIASTOLIC, "dia"), "valueString": "not measured"})
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": BP_PANEL}]},
            "subject": {"reference": f"Patient/{subject}"}, "component": components}


def _composite_extras(first: int) -> list[tuple[str, dict]]:
    """Observations and DocumentReferences for composite parameters: values that match only when
    taken from different elements, several codings, units, value[x] types, ``$`` and ``,`` in codes."""
    def obs(code: dict, **value: Any) -> dict:
        return {"resourceType": "Observation", "status": "final", "code": code, **value}

    acme = lambda code: {"coding": [{"system": ACME, "code": code}]}  # noqa: E731
    observations = [
        _bp(_mmhg(150), _mmhg(80), "P1"),  # 150 is the systolic: diastolic > 140 must not match it
        _bp(_mmhg(120), _mmhg(95), "P2"),
        _bp(_mmhg(135), _mmhg(11.5, "kPa"), "P3"),  # 11.5 kPa is 86.3 mmHg
        _bp(_mmhg(141), _mmhg(90), "P1", local=True),
        _bp(_mmhg(160), None, "P4"),
        obs({"coding": [{"system": LOINC, "code": SYSTOLIC}]}, valueQuantity=_mmhg(145)),  # a reading on its own
        obs({"coding": [{"code": "bp-local"}]}, valueQuantity=_mmhg(130)),  # a code without a system
        obs({"coding": [{"system": LOINC, "code": COVID}]},
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": DETECTED}]}),
        obs({"coding": [{"system": LOINC, "code": COVID}]},
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": NOT_DETECTED}]}),
        obs(acme("panel"), component=[  # detected is the antibody's result, not the PCR's
            {"code": {"coding": [{"system": LOINC, "code": COVID}]},
             "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": NOT_DETECTED}]}},
            {"code": {"coding": [{"system": LOINC, "code": COVID_AB}]},
             "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": DETECTED}]}}]),
        obs(acme("onset"), valueDateTime="2024-05-03T10:00:00Z"),
        obs(acme("onset"), valuePeriod={"start": "2024-05-01", "end": "2024-05-05"}),
        obs(acme("onset"), valueDateTime="2024-05"),
        obs(acme("onset"), valuePeriod={"start": "2024-05-04T00:00:00+02:00"}),
        obs(acme("recorded"), valueDateTime="2024-05-03"),
        obs(acme("note"), valueString="Positive result"),
        obs(acme("note"), valueString="négatif"),
        obs(acme("a$b"), valueQuantity={"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}),
        obs(acme("x,y"), valueString="z$w, q"),
    ]
    items = [(_label("O", first + k), o) for k, o in enumerate(observations)]
    content = [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]
    items.append(("D0", {"resourceType": "DocumentReference", "status": "current", "content": content}))
    items.append(("D1", {"resourceType": "DocumentReference", "status": "current", "content": content}))
    items.append(("D2", {"resourceType": "DocumentReference", "status": "current", "content": content,
                         "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/D0"}},
                                       {"code": "appends", "target": {"reference": "DocumentReference/D1"}}]}))
    items.append(("D3", {"resourceType": "DocumentReference", "status": "current", "content": content,
                         "relatesTo": [{"code": "transforms", "target": {"reference": "DocumentReference/D0"}},
                                       {"code": "appends", "target": {"reference": "DocumentReference/D2"}}]}))
    return items


_LABEL_REF = re.compile(r"^([A-Za-z]+)/([A-Z]\d+)$")


def _relabel(node: Any, ids: dict[str, str]) -> Any:
    """Every ``reference`` ``Type/<label>`` rewritten to ``Type/<server id>``."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and (m := _LABEL_REF.match(v)):
                out[k] = f"{m.group(1)}/{ids[m.group(2)]}"
            else:
                out[k] = _relabel(v, ids)
        return out
    if isinstance(node, list):
        return [_relabel(v, ids) for v in node]
    return node


@dataclass
class World:
    store: str
    client: httpx.AsyncClient
    resources: list[dict]     # as stored (server ids, meta)
    ids: dict[str, str]       # label -> id
    oracle: Oracle

    def fill(self, text: str) -> str:
        """``{P3}`` -> the id of the resource labelled P3."""
        return re.sub(r"\{([A-Z]\d+)\}", lambda m: self.ids[m.group(1)], text)

    async def get(self, url: str, params: list[tuple[str, str]] | None = None) -> httpx.Response:
        return await self.client.get(url, params=params, headers=STRICT)

    async def search(self, type: str, params: list[tuple[str, str]]) -> list[dict]:
        """Every entry (match and include) over all pages, in order."""
        entries: list[dict] = []
        r = await self.get(f"/{type}", params)
        for _ in range(1000):
            assert r.status_code == 200, f"{r.status_code}: {r.text}"
            page = r.json()
            assert page["resourceType"] == "Bundle" and page["type"] == "searchset"
            entries += page.get("entry", [])
            nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
            if not nxt:
                return entries
            r = await self.client.get(nxt[0], headers=STRICT)
        raise AssertionError("paging does not end")


async def seed(client: httpx.AsyncClient, dataset: Dataset) -> tuple[list[dict], dict[str, str]]:
    ids: dict[str, str] = {}
    stored: list[dict] = []
    for label, resource in dataset.items:
        body = _relabel(resource, ids)
        r = await client.post(f"/{body['resourceType']}", json=body, headers=HEADERS)
        assert r.status_code == 201, f"{label}: {r.status_code} {r.text}"
        created = r.json()
        ids[label] = created["id"]
        stored.append(created)
    return stored, ids


STORES = ("sqlite", "mongo")


@pytest.fixture(scope="module", params=STORES)
async def world(request, tmp_path_factory):
    """The seeded data set on one adapter (a fresh SQLite file or MongoDB database)."""
    tmp = tmp_path_factory.mktemp(f"search-{request.param}")
    if request.param == "mongo":
        settings = Settings(data=tmp, store=mongo_store_uri(request.getfixturevalue("mongo_uri")))
    else:
        settings = Settings(data=tmp)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir",
                                     headers=auth(app)) as client:
            stored, ids = await seed(client, build_dataset())
            yield World(request.param, client, stored, ids, Oracle(stored))
