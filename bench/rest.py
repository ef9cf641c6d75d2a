"""REST core benchmark: read, create and transaction vs. their floors, on the embedded store.

Server (uvicorn, one process) and load generator (wrk, one thread) on the same machine.
Prints req/s of each pair and the ratio. Usage:
  python bench/rest.py [--duration 10] [--connections 32]
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import free_port, wait_ready  # noqa: E402
from fhir_server.auth.keys import KeyRing  # noqa: E402
from fhir_server.auth.tokens import system_token  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402

HERE = Path(__file__).parent
PATIENT = {"resourceType": "Patient", "active": True,
           "identifier": [{"system": "http://nsi.rosminzdrav.ru/snils", "value": "112-233-445 95"}],
           "name": [{"use": "official", "family": "Иванова", "given": ["Мария", "Петровна"]}],
           "telecom": [{"system": "phone", "value": "+7 384 2000000"}], "gender": "female", "birthDate": "1961-04-12",
           "address": [{"city": "Кемерово", "country": "RU"}]}


def observation(subject: str, i: int) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": subject}, "effectiveDateTime": f"2026-11-{1 + i % 28:02d}T10:00:00+07:00",
            "valueQuantity": {"value": 60 + i, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}


def transaction_bundle() -> dict:
    pid = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": pid, "resource": PATIENT, "request": {"method": "POST", "url": "Patient"}}]
    entries += [{"resource": observation(pid, i), "request": {"method": "POST", "url": "Observation"}} for i in range(10)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def wrk(url: str, duration: int, connections: int, body: bytes | None = None, workdir: Path | None = None,
        token: str | None = None) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if token:  # the floor gets the same header (and ignores it)
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        (workdir / "body.json").write_bytes(body)
        script = workdir / "post.lua"
        script.write_text(
            'local f = io.open("%s", "rb"); wrk.body = f:read("*a"); f:close()\n'
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/fhir+json"\n'
            'wrk.headers["Prefer"] = "return=minimal"\n' % (workdir / "body.json"))
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "rest_server.py"), "--data", str(tmp / "data"), "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/fhir/metadata")
        # A practitioner's SMART token: every request is checked and audited as in production.
        settings = Settings(data=tmp / "data")
        token = system_token(KeyRing(settings.keys_path()), settings, f"{base}/fhir", "user/*.cruds",
                             subject="bench")
        h = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"}
        created = httpx.post(f"{base}/fhir/Patient", content=orjson.dumps(PATIENT), headers=h).json()
        read_url = f"{base}/fhir/Patient/{created['id']}"
        same = httpx.get(read_url, headers=h).content
        httpx.put(f"{base}/floor/read", content=same)
        assert httpx.get(f"{base}/floor/read").content == same
        d, c = args.duration, args.connections
        results = {}
        results["read"] = (wrk(read_url, d, c, token=token), wrk(f"{base}/floor/read", d, c, token=token))
        body = orjson.dumps(PATIENT)
        results["create"] = (wrk(f"{base}/fhir/Patient", d, c, body, tmp, token),
                             wrk(f"{base}/floor/create", d, c, body, tmp, token))
        tx = wrk(f"{base}/fhir", d, 8, orjson.dumps(transaction_bundle()), tmp, token)
        print(f"{'benchmark':<12}{'ours req/s':>12}{'floor req/s':>13}{'ratio':>8}{'target':>8}")
        for name, target in (("read", 0.6), ("create", 0.4)):
            ours, floor = results[name]
            print(f"{name:<12}{ours:>12.0f}{floor:>13.0f}{ours / floor:>8.2f}{target:>8}")
        print(f"transaction (1 Patient + 10 Observations): {tx:.0f} tx/s, {tx * 11:.0f} resources/s")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
