"""NDJSON part files of one type: ``<Type>-<n>.ndjson``, a new part past ``max_bytes``.

The parts (name, count, bytes) live in the job record. On resume the last part is cut back to
its recorded size, so lines written after the last checkpoint are not written twice.
"""

from __future__ import annotations

import os
from pathlib import Path


class PartWriter:
    def __init__(self, directory: Path, type: str, parts: list[dict], max_bytes: int):
        self.directory, self.type, self.parts, self.max_bytes = directory, type, parts, max_bytes
        self._file = None
        if parts:
            last = directory / parts[-1]["name"]
            with open(last, "ab") as f:
                f.truncate(parts[-1]["bytes"])

    def write(self, lines: list[bytes]) -> None:
        """Append ``lines`` (each ending in a newline) and make them durable (fsync)."""
        for line in lines:
            part = self.parts[-1] if self.parts else None
            if part is None or (part["bytes"] and part["bytes"] + len(line) > self.max_bytes):
                self._close()
                part = {"name": f"{self.type}-{len(self.parts) + 1}.ndjson", "count": 0, "bytes": 0}
                self.parts.append(part)
                # "wb": a crash after the part was begun but before the checkpoint left a stale file
                self._file = open(self.directory / part["name"], "wb")
            if self._file is None:
                self._file = open(self.directory / part["name"], "ab")
            self._file.write(line)
            part["bytes"] += len(line)
            part["count"] += 1
        self.sync()

    def sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._close()
