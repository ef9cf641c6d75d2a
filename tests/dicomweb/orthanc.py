"""A real Orthanc PACS with its DICOMweb plugin, started on a free loopback port for tests and
benchmarks: its own configuration directory and storage in a temporary folder, authentication
on, remote access off, no DICOM (DIMSE) listener. See ../shared/orthanc.md.

Orthanc 1.10 has no bind-address option: its HTTP server listens on every interface, and
``RemoteAccessAllowed: false`` refuses any request that does not come from loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BINARY = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "proxy", "proxy-secret"


def available() -> str | None:
    """Why the Orthanc tests are skipped (its binary is absent), or None when they run. A
    missing DICOMweb plugin next to an installed Orthanc is an error (``start``), not a skip."""
    if not os.path.exists(BINARY):
        return f"Orthanc is not installed ({BINARY} missing): apt-get install -y orthanc orthanc-dicomweb"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    port: int
    work: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return USER, PASSWORD

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def start(timeout: float = 30) -> Orthanc:
    if not os.path.exists(PLUGIN):
        raise RuntimeError(f"Orthanc's DICOMweb plugin is not installed ({PLUGIN}): apt-get install -y orthanc-dicomweb")
    work = Path(tempfile.mkdtemp(prefix="orthanc-"))
    (work / "config").mkdir()
    (work / "db").mkdir()
    port = _free_port()
    config = {
        "Name": "TestPACS",
        "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"),
        "Plugins": [PLUGIN],
        "HttpPort": port, "DicomServerEnabled": False, "DicomPort": _free_port(),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "HttpTimeout": 60, "KeepAlive": True, "TcpNoDelay": True,
        # No "Host": the plugin then builds absolute URLs from the request's Host header.
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Ssl": False},
    }
    (work / "config" / "orthanc.json").write_text(json.dumps(config))
    log = open(work / "orthanc.log", "ab")
    proc = subprocess.Popen([BINARY, f"--logfile={work / 'orthanc.log'}", str(work / "config")],
                            stdout=log, stderr=log, env={**os.environ, "TCP_NODELAY": "1"})
    pacs = Orthanc(port, work, proc)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}: {(work / 'orthanc.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{pacs.url}/system", auth=pacs.auth, timeout=1).status_code == 200:
                return pacs
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pacs.stop()
    raise RuntimeError("Orthanc did not start")
