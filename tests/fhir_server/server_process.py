"""A real server process (uvicorn through ``telemed serve``) for tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data: Path, port: int | None = None, *extra: str, env: dict | None = None):
        self.data, self.port, self.extra = data, port or free_port(), extra
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float = 60) -> "ServerProcess":
        cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--data", str(self.data), "--port", str(self.port), *self.extra]
        self.log = open(self.data.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    @property
    def headers(self) -> dict[str, str]:
        """An administrator's Authorization header from the server's own keys (``<data>/keys``)."""
        from tests.tokens import for_data_dir

        return for_data_dir(self.data, self.base)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()
        if getattr(self, "log", None):
            self.log.close()
