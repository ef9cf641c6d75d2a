"""Reproducible search benchmark data: N Patients and M Observations as NDJSON.

python bench/search_data.py --patients 10000 --observations 1000000 --out bench/out/search
The same seed gives byte-identical files. Observations spread over 20 LOINC codes (a few
common, most rare), two years of effective dates, and every Patient.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import orjson

SEED = 20261123
CODES = [  # (LOINC, display, unit, mean, spread, weight)
    ("8867-4", "Heart rate", "/min", 75, 12, 20), ("8480-6", "Systolic blood pressure", "mm[Hg]", 128, 15, 15),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 80, 10, 15), ("8310-5", "Body temperature", "Cel", 36.7, 0.4, 10),
    ("59408-5", "Oxygen saturation", "%", 97, 2, 10), ("29463-7", "Body weight", "kg", 78, 14, 8),
    ("9279-1", "Respiratory rate", "/min", 16, 3, 6), ("2339-0", "Glucose", "mg/dL", 105, 25, 4),
    ("2093-3", "Cholesterol", "mg/dL", 190, 35, 2), ("718-7", "Hemoglobin", "g/dL", 14, 1.5, 2),
    ("6690-2", "Leukocytes", "10*3/uL", 7, 2, 1), ("777-3", "Platelets", "10*3/uL", 250, 60, 1),
    ("2160-0", "Creatinine", "mg/dL", 1.0, 0.25, 1), ("3094-0", "Urea nitrogen", "mg/dL", 15, 4, 1),
    ("2951-2", "Sodium", "mmol/L", 140, 3, 1), ("2823-3", "Potassium", "mmol/L", 4.2, 0.4, 1),
    ("1742-6", "ALT", "U/L", 25, 10, 0.5), ("1920-8", "AST", "U/L", 24, 9, 0.5),
    ("4548-4", "Hemoglobin A1c", "%", 5.8, 0.8, 0.5), ("2085-9", "HDL Cholesterol", "mg/dL", 52, 12, 0.5),
]
SNILS = "http://nsi.rosminzdrav.ru/snils"
FAMILIES = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
            "Fedorov", "Morozov", "Volkov", "Alekseev", "Lebedev", "Semenov", "Egorov", "Pavlov", "Kozlov", "Stepanov"]
GIVEN = ["Иван", "Пётр", "Анна", "Мария", "Ольга", "Алексей", "Дмитрий", "Елена", "Sergey", "Natalia", "Pavel", "Irina"]


def snils(i: int) -> str:
    digits = f"{100000000 + i:09d}"
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]} {i % 100:02d}"


def patient(i: int, rnd: random.Random) -> dict:
    return {"resourceType": "Patient", "id": f"p{i}", "active": True,
            "identifier": [{"system": SNILS, "value": snils(i)}],
            "name": [{"family": rnd.choice(FAMILIES), "given": [rnd.choice(GIVEN)]}],
            "gender": rnd.choice(["male", "female"]),
            "birthDate": f"{rnd.randint(1930, 2015)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"}


def observation(i: int, patients: int, rnd: random.Random, weights: list[float]) -> dict:
    code, display, unit, mean, spread, _ = rnd.choices(CODES, weights)[0]
    day = rnd.randint(0, 729)
    year, doy = 2024 + day // 365, day % 365
    month, dom = 1 + doy // 31 % 12, 1 + doy % 28
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs" if unit in ("/min", "mm[Hg]", "Cel", "%", "kg") else "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "subject": {"reference": f"Patient/p{rnd.randrange(patients)}"},
            "effectiveDateTime": f"{year}-{month:02d}-{dom:02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00+07:00",
            "valueQuantity": {"value": round(rnd.gauss(mean, spread), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}


def generate(out: Path, patients: int, observations: int) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    pfile, ofile = out / "Patient.ndjson", out / "Observation.ndjson"
    marker = out / f".done-{patients}-{observations}"
    if marker.exists():
        return pfile, ofile
    rnd = random.Random(SEED)
    with pfile.open("wb") as f:
        for i in range(patients):
            f.write(orjson.dumps(patient(i, rnd)) + b"\n")
    weights = [c[5] for c in CODES]
    with ofile.open("wb") as f:
        for i in range(observations):
            f.write(orjson.dumps(observation(i, patients, rnd, weights)) + b"\n")
    marker.touch()
    return pfile, ofile


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out/search"))
    a = ap.parse_args()
    print(*generate(a.out, a.patients, a.observations))
