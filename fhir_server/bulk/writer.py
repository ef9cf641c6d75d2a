"""NDJSON part files of one job entry: ``<File>-<n>.ndjson``, a new part past ``max_bytes``.

The parts (name, count, bytes) live in the job record. On resume the last part is cut back to
its recorded size, so lines written after the last checkpoint are not written twice. Writes are
not synced one by one: the engine calls ``sync`` before it saves a checkpoint.

An entry read through the search engine also keeps ``<File>.ids``, the ids it has exported (one
a line, cut back on resume like the parts): the pass over resources changed after
``transactionTime`` looks ids up there so none is exported twice (``snapshot``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path


def _start_writeback():
    """Linux ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``: start writing a file's dirty
    pages to disk without waiting, so the fsync of the next checkpoint has little left to do
    (and the disk works while the next batch is read). A no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return lambda fd: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd: call(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE


start_writeback = _start_writeback()


class PartWriter:
    def __init__(self, directory: Path, prefix: str, parts: list[dict], max_bytes: int, ids: dict | None = None):
        """``ids``: the entry's record of its id file (``{"bytes": n}``), None for no id file."""
        self.directory, self.prefix, self.parts, self.max_bytes = directory, prefix, parts, max_bytes
        self._file = None
        self._dirty = False
        self.ids = ids
        self._ids_file = None
        if parts:
            with open(directory / parts[-1]["name"], "ab") as f:
                f.truncate(parts[-1]["bytes"])
        if ids is not None:
            self._ids_file = open(self.ids_path, "ab", buffering=0)
            self._ids_file.truncate(ids.get("bytes", 0))

    @property
    def ids_path(self) -> Path:
        return self.directory / f"{self.prefix}.ids"

    def write(self, data: bytes, count: int, ids: list[str] | None = None) -> None:
        """Append ``data``: ``count`` NDJSON lines, each ending in a newline (not yet durable)."""
        pos, end = 0, len(data)
        while pos < end:
            part = self.parts[-1] if self.parts else None
            if part is None or (part["bytes"] and part["bytes"] >= self.max_bytes):
                part = self._new_part()
            room = self.max_bytes - part["bytes"]
            if end - pos <= room:
                cut = end
            else:
                cut = data.rfind(b"\n", pos, pos + room) + 1
                if cut <= pos:  # not even one line fits
                    if part["bytes"]:
                        self._new_part()
                        continue
                    cut = data.find(b"\n", pos) + 1 or end  # one line longer than a part: a part of its own
            n = count if (pos, cut) == (0, end) else data.count(b"\n", pos, cut)
            if self._file is None:
                self._file = open(self.directory / part["name"], "ab", buffering=0)
            self._file.write(memoryview(data)[pos:cut])
            self._dirty = True
            start_writeback(self._file.fileno())
            part["bytes"] += cut - pos
            part["count"] += n
            pos = cut
        if ids and self._ids_file is not None:
            line = ("\n".join(ids) + "\n").encode()
            self._ids_file.write(line)
            self._dirty = True
            self.ids["bytes"] = self.ids.get("bytes", 0) + len(line)

    def known(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` already in the id file."""
        if self.ids is None or not ids:
            return set()
        wanted = {i.encode() for i in ids}
        found: set[str] = set()
        with open(self.ids_path, "rb") as f:
            for line in f:
                if line[:-1] in wanted:
                    found.add(line[:-1].decode())
        return found

    def _new_part(self) -> dict:
        self._close()
        part = {"name": f"{self.prefix}-{len(self.parts) + 1}.ndjson", "count": 0, "bytes": 0}
        self.parts.append(part)
        # "wb": a crash after the part was begun but before the checkpoint left a stale file
        self._file = open(self.directory / part["name"], "wb", buffering=0)
        return part

    def sync(self) -> None:
        """Make everything written so far durable."""
        if self._dirty:
            for f in (self._file, self._ids_file):
                if f is not None:
                    os.fsync(f.fileno())
            self._dirty = False

    def _close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Close the files, durable."""
        self._close()
        if self._ids_file is not None:
            self.sync()
            self._ids_file.close()
            self._ids_file = None
