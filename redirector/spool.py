"""An append-only local file for clicks the database could not take, replayed later (C4).

Each process owns one segment file, reserved at full size up front with posix_fallocate,
so that appending into it needs no new disk blocks and still works when the disk is full.
Records are JSON lines written in place and fsynced before the click is acknowledged; the
unused tail of a segment is zero bytes. A process holds an exclusive flock on its segment
for life, so segments left by a killed process can be told apart and replayed by another.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class SpoolFull(OSError):
    pass


class Spool:
    def __init__(self, directory: str, reserve_bytes: int) -> None:
        self.directory = Path(directory)
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._offset = 0

    def open(self) -> None:
        """Create and reserve this process's segment; harmless to call again."""
        with self._lock:
            if self._fd is not None:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"clicks-{os.getpid()}-{os.urandom(4).hex()}.spool"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            except OSError:
                log.warning("could not reserve %s bytes for the click spool", self.reserve_bytes, exc_info=True)
            self._fd, self._path, self._offset = fd, path, 0

    @property
    def pending(self) -> bool:
        return self._offset > 0

    def append(self, records: Iterable[dict]) -> None:
        """Write records durably (fsynced) or raise OSError."""
        data = b"".join(json.dumps(record, separators=(",", ":")).encode() + b"\n" for record in records)
        with self._lock:
            if self._fd is None:
                raise OSError("spool is not open")
            if self._offset + len(data) > max(self.reserve_bytes, os.fstat(self._fd).st_size):
                raise SpoolFull("click spool segment is full")
            written = os.pwrite(self._fd, data, self._offset)
            if written != len(data):
                raise OSError("short write to the click spool")
            os.fdatasync(self._fd)
            self._offset += len(data)

    def replay(self, store: Callable[[list[dict]], None]) -> int:
        """Hand spooled records to ``store`` (which must be idempotent); return how many.

        Our own segment is emptied in place (its reservation kept); segments of processes
        that have died are replayed and removed.
        """
        replayed = 0
        with self._lock:
            if self._fd is not None and self._offset:
                records = _decode(os.pread(self._fd, self._offset, 0))
                store(records)
                os.pwrite(self._fd, b"\0" * self._offset, 0)
                os.fdatasync(self._fd)
                self._offset = 0
                replayed += len(records)
        for path in sorted(self.directory.glob("clicks-*.spool")):
            if path == self._path:
                continue
            replayed += _replay_orphan(path, store)
        return replayed


def _decode(data: bytes) -> list[dict]:
    records = []
    for line in data.split(b"\n"):
        line = line.strip(b"\0")
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            # A torn last line from a crash mid-write: that click was never acknowledged.
            log.warning("skipping an unreadable click spool record")
    return records


def _replay_orphan(path: Path, store: Callable[[list[dict]], None]) -> int:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its process is alive and owns it
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0).split(b"\0", 1)[0]
        records = _decode(data)
        if records:
            store(records)
        path.unlink()
        return len(records)
    finally:
        os.close(fd)
