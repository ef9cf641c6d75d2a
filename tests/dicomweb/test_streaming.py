"""A study much larger than the proxy's memory budget passes through with bounded memory."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.dicomweb import data
from tests.dicomweb.conftest import client_for, store_direct

pytestmark = [pytest.mark.req("UA-V.1"), pytest.mark.req("UA-VI.3")]

INSTANCES, SIDE = 160, 512  # 160 x 512 KiB of pixels: ~80 MiB
LIMIT = 40 * 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Peak:
    """Samples a process's resident memory every 10 ms until stopped."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@pytest.fixture(scope="module")
def large(pacs):  # stored once in the PACS, retrieved through each store's server
    study = data.study(INSTANCES, patient="PAT-LARGE", side=SIDE)
    store_direct(pacs, study)
    return study


def test_a_large_study_streams_through_with_bounded_memory(server, large):
    pid = server.process.proc.pid
    client = client_for(server, "system")
    client.retrieve_instance(large.uid, large.series, large.instances[0])  # warm up
    before = rss(pid)
    peak = Peak(pid)
    count, size = 0, 0
    for ds in client.iter_study(large.uid):
        count += 1
        size += len(ds.PixelData)
    grown = peak.stop() - before
    assert count == INSTANCES and size >= 80 * 1024 * 1024
    assert grown < LIMIT, f"the proxy grew by {grown / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB study"


def test_a_streamed_study_carries_the_pacs_bytes_unchanged(server, pacs, large):
    path = f"/studies/{large.uid}/series/{large.series}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    direct = httpx.get(pacs.dicomweb + path, auth=pacs.auth, headers=accept, timeout=60)
    proxied = httpx.get(server.dicomweb + path, headers={**server.headers("system"), **accept}, timeout=60)
    assert proxied.status_code == direct.status_code == 200
    # Orthanc draws a new boundary for every answer: compare with it taken out.
    b_direct, b_proxied = (r.headers["content-type"].split("boundary=")[1].strip('"').encode()
                           for r in (direct, proxied))
    assert proxied.headers["content-type"].replace(b_proxied.decode(), "B") == \
        direct.headers["content-type"].replace(b_direct.decode(), "B")
    assert proxied.content.replace(b_proxied, b"B") == direct.content.replace(b_direct, b"B")
