"""Bulk export benchmark on the embedded store: resources/s of the export engine vs. a floor,
and the peak RSS growth during the export.

python bench/bulk_export.py [--patients 10000] [--observations 90000] [--keep DIR] [--runs 3]
The floor scans the same SQLite file (``SELECT json FROM resource WHERE type=? ORDER BY id``)
and writes each row as an NDJSON line: the least any export must do. The export runs the
``$export`` engine (fhir_server/bulk/engine.py) with the default settings (4 MB batches read on
the engine's own SQLite connection in a thread, 100 MB files, a checkpoint every 16 batches or
5 s and at the end of each type, everything fsynced) on a system-level job of Patient and
Observation; the export's files are checked (after timing) to hold as many lines and bytes as
the floor's.
Data: bench/search_data.py (seeded); ``--keep DIR`` loads it once and reuses the store
(1M: ``--patients 10000 --observations 990000 --keep /tmp/bulk1m``, ~30 min to load).
Each run also prints the CPU seconds of both (all threads): on a machine shared with other work
the wall-clock ratio is noisy, the CPU ratio much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.search_data import generate  # noqa: E402
from fhir_server.bulk import engine  # noqa: E402
from fhir_server.bulk.jobs import save_record  # noqa: E402
from fhir_server.bulk.local import new_record  # noqa: E402
from fhir_server.cli import _in_process  # noqa: E402
from fhir_server.load import Loader  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.storage.sqlite import SQLiteStore  # noqa: E402

TYPES = ["Patient", "Observation"]
PAGE = 4096  # bytes per page of /proc/self/statm


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Samples the process's RSS every 10 ms in a thread; ``growth`` is peak minus the start."""

    def __enter__(self):
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def load(data: Path, patients: int, observations: int) -> None:
    marker = data / f".loaded-{patients}-{observations}"
    if marker.exists():
        return
    files = generate(HERE / "out" / f"search-{patients}-{observations}", patients, observations)
    start = time.perf_counter()
    summary = asyncio.run(_in_process(lambda c: Loader(c, chunk=500, concurrency=2).load(list(files)),
                                      Settings(data=data)))
    if summary.rejected:
        raise SystemExit(f"rejected: {summary.rejected[:3]}")
    print(f"loaded {summary.loaded} resources in {time.perf_counter() - start:.0f} s")
    marker.touch()


def floor(db: Path, out: Path) -> tuple[int, float, float]:
    """Resources, seconds, CPU seconds."""
    out.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    start, cpu, n = time.perf_counter(), time.process_time(), 0
    for type in TYPES:
        with open(out / f"{type}.ndjson", "wb") as f:
            for (body,) in conn.execute("SELECT json FROM resource WHERE type=? AND deleted=0 ORDER BY id", (type,)):
                f.write(body + b"\n")
                n += 1
    conn.close()
    return n, time.perf_counter() - start, time.process_time() - cpu


async def export(db: Path, out: Path) -> tuple[int, float, float, float]:
    """Resources, seconds, peak RSS growth (MB), CPU seconds (every thread of the process)."""
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(data=db.parent)
    store = SQLiteStore(db)
    record = new_record(TYPES, None, [])
    save_record(out, record)
    await asyncio.sleep(engine.SETTLE_SECONDS + 0.1)  # not timed: the wait for in-flight writes
    with PeakRss() as mem:
        start, cpu = time.perf_counter(), time.process_time()
        await engine.run(store, settings, record, out, lambda r: save_record(out, r))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    await store.close()
    n = sum(p["count"] for t in record["types"] for p in t["parts"])
    return n, seconds, mem.growth_mb, cpu


def _lines_and_bytes(folder: Path) -> tuple[int, int]:
    lines = size = 0
    for path in folder.glob("*.ndjson"):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                size += len(chunk)
    return lines, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--observations", type=int, default=90_000)
    ap.add_argument("--keep", type=Path, help="Data directory to load once and reuse.")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    data = a.keep or Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    load(data, a.patients, a.observations)
    db = Settings(data=data).sqlite_path()
    scratch = Path(tempfile.mkdtemp(prefix="bulk-out-"))
    try:
        floors, exports, growths, cpus = [], [], [], []
        for run in range(a.runs):
            n, s, floor_cpu = floor(db, scratch / f"floor-{run}")
            floors.append(n / s)
            m, t, growth, export_cpu = asyncio.run(export(db, scratch / f"export-{run}"))
            if m != n or _lines_and_bytes(scratch / f"export-{run}") != _lines_and_bytes(scratch / f"floor-{run}"):
                raise SystemExit(f"the export wrote {m} resources, the floor {n}")
            shutil.rmtree(scratch / f"floor-{run}")
            shutil.rmtree(scratch / f"export-{run}")
            exports.append(m / t)
            growths.append(growth)
            cpus.append(floor_cpu / export_cpu)
            print(f"run {run + 1}: floor {n / s:,.0f} res/s  export {m / t:,.0f} res/s  "
                  f"({m / t / (n / s):.2f} x floor)  peak RSS growth {growth:.1f} MB  "
                  f"CPU s floor {floor_cpu:.2f} export {export_cpu:.2f}")
        best_f, best_e = max(floors), max(exports)
        print(f"{n:,} resources: floor {best_f:,.0f} res/s, export {best_e:,.0f} res/s "
              f"= {best_e / best_f:.2f} x floor (target >= 0.5); peak RSS growth max {max(growths):.1f} MB "
              f"(target < 150); floor CPU / export CPU {min(cpus):.2f}-{max(cpus):.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if a.keep is None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
