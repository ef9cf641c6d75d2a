"""Search benchmark on the embedded store: load time vs. a raw SQLite insert floor, then
p50/p95 latency of the issue's query shapes vs. a plain read, over real HTTP (uvicorn).

python bench/search.py [--patients 10000] [--observations 1000000] [--requests 200]
Data: bench/search_data.py (seeded, reproducible), kept in bench/out/search-<P>-<O>/.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.common import free_port, wait_ready  # noqa: E402
from bench.search_data import CODES, SNILS, generate, snils  # noqa: E402
from fhir_server.cli import _in_process  # noqa: E402
from fhir_server.load import Loader  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.auth.keys import KeyRing  # noqa: E402
from fhir_server.auth.tokens import system_token  # noqa: E402


def floor_load(files: list[Path], db: Path) -> float:
    """Resources/s of the floor: each NDJSON line inserted as one row (id, json), one transaction."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE r (n INTEGER PRIMARY KEY, json BLOB)")
    start, n = time.perf_counter(), 0
    conn.execute("BEGIN")
    for f in files:
        with f.open("rb") as fh:
            rows = [(line,) for line in fh if line.strip()]
        conn.executemany("INSERT INTO r (json) VALUES (?)", rows)
        n += len(rows)
    conn.execute("COMMIT")
    conn.close()
    return n / (time.perf_counter() - start)


def load(files: list[Path], data: Path) -> tuple[int, float]:
    start = time.perf_counter()
    summary = asyncio.run(_in_process(lambda c: Loader(c, chunk=500, concurrency=2).load(files), Settings(data=data)))
    if summary.rejected:
        raise SystemExit(f"rejected: {summary.rejected[:3]}")
    return summary.loaded, summary.loaded / (time.perf_counter() - start)



def percentiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=20)
    return statistics.median(samples), qs[18]


def timed(client: httpx.Client, urls: list[str], check=None) -> list[float]:
    out = []
    for url in urls:
        t = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
        if check:
            check(r.json())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="keep the loaded data directory here and reuse it")
    a = ap.parse_args()
    out = HERE / "out" / f"search-{a.patients}-{a.observations}"
    files = list(generate(out, a.patients, a.observations))
    total = a.patients + a.observations
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    data = a.keep or tmp / "data"
    if not (data / "telemed.sqlite3").exists():
        floor = floor_load(files, tmp / "floor.sqlite3")
        loaded, rate = load(files, data)
        print(f"load: {loaded} resources, {rate:.0f} resources/s; floor {floor:.0f} rows/s; ratio {rate / floor:.3f}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fhir_server.cli", "serve", "--data", str(data), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir"
    rnd = random.Random(7)
    try:
        wait_ready(f"{base}/metadata")
        n = a.requests
        common, rare = CODES[0][0], CODES[-1][0]
        patients = [rnd.randrange(a.patients) for _ in range(n)]
        settings = Settings(data=data)  # a practitioner's token from the server's own keys
        token = system_token(KeyRing(settings.keys_path()), settings, base, "user/*.rs", subject="bench")
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as c:
            timed(c, [f"{base}/Patient/p{i}" for i in patients[:20]])  # warm up
            timed(c, [f"{base}/Observation/o{rnd.randrange(a.observations)}" for _ in range(n)])
            read = timed(c, [f"{base}/Observation/o{rnd.randrange(a.observations)}" for _ in range(n)])
            shapes = {
                "Observation?patient=X&code=Y": [f"{base}/Observation?patient=Patient/p{p}&code=http://loinc.org|{common}" for p in patients],
                "Observation?code=Y&date=ge...&_sort=-date&_count=50": [f"{base}/Observation?code=http://loinc.org|{common}&date=ge2025-06-01&_sort=-date&_count=50"] * max(n // 10, 5),
                "Observation?patient.identifier=S|V (chain)": [f"{base}/Observation?patient.identifier={SNILS}|{snils(p)}" for p in patients],
                "Patient?_has:Observation:patient:code=Y (rare code)": [f"{base}/Patient?_has:Observation:patient:code={rare}&_count=50"] * max(n // 10, 5),
                "Patient?_has:Observation:patient:code=Y (common code)": [f"{base}/Patient?_has:Observation:patient:code={common}&_count=50"] * max(n // 20, 5),
                "Observation?patient=X&_include=Observation:patient": [f"{base}/Observation?patient=Patient/p{p}&_include=Observation:patient" for p in patients],
                "Patient?_id=X&_revinclude=Observation:patient": [f"{base}/Patient?_id=p{p}&_revinclude=Observation:patient&_count=100" for p in patients],
            }
            r50, r95 = percentiles(read)
            print(f"plain read: p50 {r50:.2f} ms, p95 {r95:.2f} ms ({n} requests, after {n} to warm up)")
            # Each query is followed by a plain read, so both see the same moments of the machine:
            # the ratios use the reads taken beside the shape's queries.
            print(f"{'query':<56}{'p50 ms':>9}{'p95 ms':>9}{'p95/read p95':>14}{'read p95 beside':>17}")
            for name, urls in shapes.items():
                beside = [f"{base}/Observation/o{rnd.randrange(a.observations)}" for _ in urls]
                both = timed(c, [u for pair in zip(urls, beside) for u in pair])
                p50, p95 = percentiles(both[0::2])
                _, b95 = percentiles(both[1::2])
                print(f"{name:<56}{p50:>9.2f}{p95:>9.2f}{p95 / b95:>14.1f}{b95:>17.2f}")
            # paging through 10,000 results with _count=1000
            start, pages, seen = time.perf_counter(), 0, 0
            url = f"{base}/Observation?code=http://loinc.org|{common}&_count=1000"
            while url and seen < 10_000:
                body = c.get(url).json()
                seen += sum(1 for e in body.get("entry", []) if e["search"]["mode"] == "match")
                pages += 1
                url = next((l["url"] for l in body["link"] if l["relation"] == "next"), None)
            dt = time.perf_counter() - start
            print(f"paging {seen} results in {pages} pages of 1000: {dt:.2f} s ({dt / pages * 1000:.0f} ms per page)")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"data set: {a.patients} Patients, {a.observations} Observations ({total} resources)")


if __name__ == "__main__":
    main()
