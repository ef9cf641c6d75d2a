"""DICOMweb proxy benchmark: the proxy vs. Orthanc directly, in one run.

- WADO-RS of a ~150 MB study (300 CT instances of 512x512 16-bit pixels), streamed and counted
  by the client, through the proxy and directly, alternately, ``--rounds`` times each; the
  proxy's resident memory is sampled every 10 ms during its transfers. Two clients: httpx (as
  a Python viewer would fetch; it takes about one core itself, so on a 2-core machine the
  proxy's CPU comes out of the client's and Orthanc's share), then curl (C, a few percent of a
  core: Orthanc sets the pace, as it would for a viewer on another machine).
- QIDO-RS: ``--queries`` study searches by PatientID, through the proxy (a consultation
  participant's token, so the access lookups are included; and an admin token) and directly,
  interleaved; latency p50/p95 and the added p50.
Targets: throughput >= 0.9 x direct, added QIDO p50 <= 2 ms, RSS growth < 50 MB.
Both clients send ``Accept-Encoding: identity`` (httpx offers gzip by default; Orthanc would
then compress its JSON for the direct client only, which the proxy never asks for).
``--splice off`` runs the proxy with its kernel splice fast path off (TELEMED_DICOMWEB_SPLICE=0).
The proxy's CPU is also given per GiB relayed and per query (process CPU time, all threads).
Usage: python bench/dicomweb.py [--rounds 3] [--queries 100] [--splice on|off]
Needs Orthanc: apt-get install -y orthanc orthanc-dicomweb.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fhir_server.auth import tokens  # noqa: E402
from fhir_server.auth.consultation import KIND  # noqa: E402
from fhir_server.auth.keys import KeyRing  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from tests.dicomweb import data, orthanc  # noqa: E402
from tests.fhir_server.server_process import ServerProcess, free_port  # noqa: E402

ACCEPT = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
IDENTITY = {"Accept-Encoding": "identity"}


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads in seconds (``/proc/<pid>/task/*/schedstat``, ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def load_study(pacs, instances: int, side: int) -> data.Study:
    study = data.study(instances, patient="PAT-BENCH", name="Bench^Patient", side=side)
    for at in range(0, instances, 50):  # 50 instances (~25 MB) per STOW
        part = data.Study(study.uid, study.series, study.datasets[at:at + 50])
        r = httpx.post(f"{pacs.dicomweb}/studies", content=part.body(), auth=pacs.auth, timeout=300,
                       headers={"Content-Type": data.CONTENT_TYPE, "Accept": "application/dicom+json"})
        r.raise_for_status()
    return study


def seed(fhir: str, headers: dict, study: data.Study) -> None:
    ref = lambda r: {"reference": r}  # noqa: E731
    resources = [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Practitioner", "id": "consultant"},
        {"resourceType": "PractitionerRole", "id": "consultant-role", "practitioner": ref("Practitioner/consultant")},
        {"resourceType": "ImagingStudy", "id": "bench", "status": "available", "subject": ref("Patient/p1"),
         "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.uid}"}]},
        {"resourceType": "ServiceRequest", "id": "c1", "status": "active", "intent": "order", "subject": ref("Patient/p1"),
         "category": [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}], "supportingInfo": [ref("ImagingStudy/bench")]},
        {"resourceType": "Task", "id": "t1", "status": "in-progress", "intent": "order", "basedOn": [ref("ServiceRequest/c1")],
         "owner": ref("PractitionerRole/consultant-role")},
    ]
    with httpx.Client(base_url=fhir, headers=headers) as c:
        for r in resources:
            c.put(f"/{r['resourceType']}/{r['id']}", json=r).raise_for_status()


def transfer(client: httpx.Client, url: str, headers: dict | None = None, **kw) -> tuple[int, float]:
    start = time.perf_counter()
    size = 0
    with client.stream("GET", url, headers={**ACCEPT, **(headers or {})}, **kw) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            size += len(chunk)
    return size, time.perf_counter() - start


def curl(url: str, headers: dict) -> tuple[int, float]:
    """One transfer by curl to /dev/null: (bytes, seconds)."""
    cmd = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
    for name, value in {**ACCEPT, **IDENTITY, **headers}.items():
        cmd += ["-H", f"{name}: {value}"]
    size, secs = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout.split()
    return int(size), float(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--instances", type=int, default=300)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--splice", choices=("on", "off"), default="on")
    args = ap.parse_args()
    reason = orthanc.available()
    if reason:
        raise SystemExit(reason)
    pacs = orthanc.start()
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    (work / "data").mkdir()
    port = free_port()
    server = ServerProcess(work / "data", port, env={
        "TELEMED_BASE_URL": f"http://127.0.0.1:{port}/fhir", "TELEMED_DICOMWEB_UPSTREAM": pacs.dicomweb,
        "TELEMED_DICOMWEB_USERNAME": orthanc.USER, "TELEMED_DICOMWEB_PASSWORD": orthanc.PASSWORD,
        "TELEMED_LOG_LEVEL": "WARNING", "TELEMED_DICOMWEB_SPLICE": "1" if args.splice == "on" else "0"})
    try:
        server.start()
        t0 = time.time()
        study = load_study(pacs, args.instances, args.side)
        print(f"loaded {args.instances} instances into Orthanc in {time.time() - t0:.1f} s")
        keys = KeyRing(Settings(data=server.data).keys_path())
        mint = lambda scope, **c: {"Authorization": "Bearer " + tokens.mint(keys, {  # noqa: E731
            "iss": server.base, "aud": server.base, "sub": "bench", "client_id": "bench", "scope": scope, **c},
            3600)[0]}
        admin = mint("system/*.*")
        consultant = mint("user/*.cruds fhirUser", fhirUser="Practitioner/consultant")
        seed(server.base, admin, study)
        proxy_root = f"http://127.0.0.1:{port}/dicomweb"
        path = f"/studies/{study.uid}"
        pid = server.proc.pid

        # WADO-RS: alternate direct and proxied transfers.
        direct_rates, proxy_rates, growth, proxy_cpu, pacs_cpu, ratios, per_gib = [], [], [], [], [], [], []
        with httpx.Client(timeout=300, headers=IDENTITY) as client:
            transfer(client, pacs.dicomweb + path, auth=pacs.auth)  # warm Orthanc's caches
            transfer(client, proxy_root + path, headers=consultant)
            for _ in range(args.rounds):
                size, secs = transfer(client, pacs.dicomweb + path, auth=pacs.auth)
                direct_rates.append(size / secs)
                before, peak, stop = rss(pid), [0], threading.Event()

                def sample():
                    while not stop.is_set():
                        peak[0] = max(peak[0], rss(pid))
                        time.sleep(0.01)

                sampler = threading.Thread(target=sample)
                sampler.start()
                cpu = cpu_seconds(pid), cpu_seconds(pacs.proc.pid)
                size_p, secs = transfer(client, proxy_root + path, headers=consultant)
                stop.set()
                sampler.join()
                proxy_rates.append(size_p / secs)
                ratios.append(proxy_rates[-1] / direct_rates[-1])
                proxy_cpu.append((cpu_seconds(pid) - cpu[0]) / secs)
                per_gib.append((cpu_seconds(pid) - cpu[0]) / (size_p / 2**30))
                pacs_cpu.append((cpu_seconds(pacs.proc.pid) - cpu[1]) / secs)
                growth.append(max(peak[0] - before, 0))

            # The same with curl as the client.
            curl_ratios, curl_rates, curl_gib = [], {"direct": [], "proxy": []}, []
            basic = {"Authorization": "Basic " + base64.b64encode(":".join(pacs.auth).encode()).decode()}
            for _ in range(args.rounds if shutil.which("curl") else 0):
                size_d, secs_d = curl(pacs.dicomweb + path, basic)
                cpu = cpu_seconds(pid)
                size_p, secs_p = curl(proxy_root + path, consultant)
                curl_gib.append((cpu_seconds(pid) - cpu) / (size_p / 2**30))
                curl_rates["direct"].append(size_d / secs_d)
                curl_rates["proxy"].append(size_p / secs_p)
                curl_ratios.append(curl_rates["proxy"][-1] / curl_rates["direct"][-1])

            # QIDO-RS: interleaved, one query at a time.
            query = {"PatientID": "PAT-BENCH"}
            lat = {"direct": [], "proxy (participant)": [], "proxy (admin)": []}
            for _ in range(5):
                client.get(proxy_root + "/studies", params=query, headers=consultant)
            qido_cpu = cpu_seconds(pid)
            for _ in range(args.queries):
                for name, url, kw in (("direct", pacs.dicomweb + "/studies", {"auth": pacs.auth}),
                                      ("proxy (participant)", proxy_root + "/studies", {"headers": consultant}),
                                      ("proxy (admin)", proxy_root + "/studies", {"headers": admin})):
                    start = time.perf_counter()
                    r = client.get(url, params=query, **kw)
                    lat[name].append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200 and len(r.json()) == 1, (name, r.status_code, r.text[:200])
            qido_cpu = (cpu_seconds(pid) - qido_cpu) / (2 * args.queries)

        mb = 1024 * 1024
        d, p = statistics.median(direct_rates), statistics.median(proxy_rates)
        print(f"\nWADO-RS study: {size / mb:.0f} MiB, {args.rounds} rounds each (median; min-max)")
        print(f"  direct  {d / mb:7.1f} MiB/s  ({min(direct_rates) / mb:.0f}-{max(direct_rates) / mb:.0f})")
        print(f"  proxy   {p / mb:7.1f} MiB/s  ({min(proxy_rates) / mb:.0f}-{max(proxy_rates) / mb:.0f})")
        print(f"  ratio   {p / d:.2f}  (target >= 0.9); per round: median {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"  proxy CPU per GiB relayed: {statistics.median(per_gib):.2f} s (splice {args.splice})")
        print(f"  CPU busy during proxied transfers: proxy {statistics.median(proxy_cpu):.2f} cores, Orthanc "
              f"{statistics.median(pacs_cpu):.2f} cores (machine: {os.cpu_count()} cores, client included)")
        print(f"  proxy RSS growth during transfer: max {max(growth) / mb:.1f} MiB (target < 50)")
        if curl_ratios:
            d, p = statistics.median(curl_rates["direct"]), statistics.median(curl_rates["proxy"])
            print(f"  with curl as the client: direct {d / mb:.1f} MiB/s, proxy {p / mb:.1f} MiB/s, ratio {p / d:.2f}; "
                  f"per round: median {statistics.median(curl_ratios):.2f} ({min(curl_ratios):.2f}-{max(curl_ratios):.2f}); "
                  f"proxy CPU per GiB {statistics.median(curl_gib):.2f} s")
        else:
            print("  (curl is not installed: no curl rounds)")
        print(f"\nQIDO-RS: {args.queries} queries each, latency in ms (proxy CPU {qido_cpu * 1000:.2f} ms per query)")
        base = statistics.median(lat["direct"])
        for name, values in lat.items():
            values.sort()
            p50, p95 = statistics.median(values), values[int(len(values) * 0.95) - 1]
            added = "" if name == "direct" else f"  added p50 {p50 - base:+.2f} ms (target <= 2)"
            print(f"  {name:20s} p50 {p50:6.2f}  p95 {p95:6.2f}{added}")
    finally:
        server.stop()
        pacs.stop()


if __name__ == "__main__":
    main()
