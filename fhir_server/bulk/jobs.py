"""Durable export jobs: one directory per job under ``bulk_dir``, and the workers that run them.

``<bulk_dir>/<job>/job.json`` is the job record (what to export, ``transactionTime``, where each
type has got to, its part files); it is replaced atomically after every batch, so a job
survives a restart or a kill -9 and resumes from its last checkpoint. A process runs a job
while it holds an exclusive ``flock`` on ``<job>/lock``: the OS releases it when the process
dies, so another process (or the same one after a restart) takes the job over. ``cancelled``
marks a job being cancelled; whoever holds the lock deletes the directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
RUNNABLE = ("accepted", "running")
POLL_SECONDS = 0.5


class Jobs:
    """Job records and their directories under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def dir(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def create(self, record: dict) -> str:
        job_id = uuid.uuid4().hex
        self.dir(job_id).mkdir(parents=True)
        record["id"] = job_id
        self.save(record)
        return job_id

    def save(self, record: dict) -> None:
        save_record(self.dir(record["id"]), record)

    def load(self, job_id: str) -> dict | None:
        """The record, None when there is no such job (or it is being cancelled)."""
        if not JOB_ID.match(job_id):
            return None
        path = self.root / job_id
        if (path / "cancelled").exists():
            return None
        try:
            return orjson.loads((path / "job.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if JOB_ID.match(p.name))

    def lock(self, job_id: str) -> int | None:
        """An exclusive lock on the job (a file descriptor to ``unlock``), None if someone holds it."""
        try:
            fd = os.open(self.dir(job_id) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)

    def cancel(self, job_id: str) -> bool:
        """Mark the job cancelled; delete it now unless a worker runs it (the worker then does)."""
        if self.load(job_id) is None:
            return False
        (self.dir(job_id) / "cancelled").touch()
        fd = self.lock(job_id)
        if fd is not None:
            self.remove(job_id)
            self.unlock(fd)
        return True

    def cancelled(self, job_id: str) -> bool:
        return (self.dir(job_id) / "cancelled").exists() or not self.dir(job_id).exists()

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.dir(job_id), ignore_errors=True)

    def purge(self, now: float) -> None:
        """Delete expired jobs (and their files) and leftovers of cancelled ones nobody runs."""
        for job_id in self.ids():
            path = self.root / job_id
            if not (path / "cancelled").exists():
                record = self.load(job_id)
                if record is None or not record.get("expires_at") or record["expires_at"] >= now:
                    continue
            fd = self.lock(job_id)
            if fd is not None:
                self.remove(job_id)
                self.unlock(fd)


def save_record(directory: Path, record: dict) -> None:
    """Write ``job.json`` atomically and durably (write, fsync, rename)."""
    tmp = directory / "job.json.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(record))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / "job.json")


class Workers:
    """Runs runnable jobs in the background, at most ``concurrency`` at a time in this process."""

    def __init__(self, svc, jobs: Jobs, concurrency: int):
        self.svc, self.jobs, self.concurrency = svc, jobs, concurrency
        self._running: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop every job at once; each resumes from its last checkpoint on the next start."""
        tasks = [t for t in (self._loop_task, *self._running.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                self.jobs.purge(time.time())
                self._pick()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("bulk export worker round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def _pick(self) -> None:
        for job_id in self.jobs.ids():
            if len(self._running) >= self.concurrency:
                return
            if job_id in self._running:
                continue
            record = self.jobs.load(job_id)
            if record is None or record.get("state") not in RUNNABLE:
                continue
            fd = self.jobs.lock(job_id)
            if fd is None:
                continue  # another process runs it
            task = asyncio.get_running_loop().create_task(self._run(job_id, fd))
            self._running[job_id] = task

    async def _run(self, job_id: str, fd: int) -> None:
        from fhir_server.bulk import engine

        try:
            await engine.run_job(self.svc, self.jobs, job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the job is marked failed by the engine; logged here
            log.exception("bulk export job %s failed", job_id)
        finally:
            if self.jobs.cancelled(job_id):
                self.jobs.remove(job_id)
            self.jobs.unlock(fd)
            self._running.pop(job_id, None)
            self._wake.set()
