"""The click log: every click is made durable here before its redirect is answered.

Each redirector process appends clicks to segment files of its own, written full of
zeros up front, so appending needs no new disk blocks and still works when the disk is
full. Records are JSON lines written in place and fdatasync'ed
in groups (one sync for every click that arrived meanwhile); the unused tail of a
segment is zero bytes. The ingester moves sealed segments into the database and then
recycles them, so the shopper never waits for index updates, and a database that is
down or full only makes the log longer.

A process holds an exclusive flock on its segments for life, so segments left by a
process that died (kill -9) are told apart and ingested by another process, or by
`flask --app wsgi ingest-clicks`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
STORE_CHUNK = 2000  # records per call of the store: one database transaction

PATTERN = "clicks-*.log"


class LogFull(OSError):
    """A write the click log cannot take."""


@dataclass
class Segment:
    path: Path
    fd: int
    size: int
    offset: int = 0

    def close(self) -> None:
        os.close(self.fd)


class ClickLog:
    def __init__(self, directory: str, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()  # guards the segment lists; appends come from one leader at a time
        self._active: Segment | None = None
        self._sealed: list[Segment] = []
        self._spare: Segment | None = None

    def open(self) -> None:
        """Create and reserve this process's first segment; harmless to call again."""
        with self._lock:
            if self._active is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._active = self._new_segment()

    def _new_segment(self) -> Segment:
        path = self.directory / f"clicks-{os.getpid()}-{os.urandom(4).hex()}.log"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            _reserve(fd, self.segment_bytes)
        except OSError:
            log.warning("could not reserve %s bytes for a click log segment", self.segment_bytes, exc_info=True)
        return Segment(path, fd, os.fstat(fd).st_size)

    @property
    def pending(self) -> int:
        """Bytes written and not yet in the database."""
        with self._lock:
            return sum(segment.offset for segment in [*self._sealed, *filter(None, [self._active])])

    def append(self, records: Iterable[dict]) -> None:
        """Write records durably (fdatasync'ed) or raise OSError."""
        data = b"".join(json.dumps(record, separators=(",", ":")).encode() + b"\n" for record in records)
        with self._lock:
            segment = self._active
            if segment is None:
                raise OSError("click log is not open")
            if segment.offset + len(data) > max(segment.size, self.segment_bytes):
                # Full: seal it and continue in the spare, or a new segment if the disk allows one.
                self._sealed.append(segment)
                segment = self._active = self._spare or self._new_segment()
                self._spare = None
                if len(data) > segment.size:
                    raise LogFull("a batch larger than a log segment")
            try:
                self._write(segment, data)
            except OSError:
                # This segment cannot take more (a file-size limit, a failing block): seal what it
                # holds and try once more in a fresh one.
                log.warning("click log segment %s refused a write; starting another", segment.path, exc_info=True)
                if segment.offset:
                    self._sealed.append(segment)
                else:
                    segment.close()
                    segment.path.unlink(missing_ok=True)
                segment = self._active = self._new_segment()
                self._write(segment, data)

    @staticmethod
    def _write(segment: Segment, data: bytes) -> None:
        written = os.pwrite(segment.fd, data, segment.offset)
        if written != len(data):
            raise OSError("short write to the click log")
        os.fdatasync(segment.fd)
        segment.offset += len(data)

    def seal(self) -> None:
        """Start a fresh segment so that everything written so far can be ingested."""
        with self._lock:
            if self._active is None or self._active.offset == 0:
                return
            self._sealed.append(self._active)
            try:
                self._active = self._spare or self._new_segment()
            except OSError:
                self._active = self._sealed.pop()  # no room for a new one: keep appending here
            self._spare = None

    def ingest(self, store: Callable[[list[dict]], None]) -> int:
        """Hand sealed records to ``store`` (which must be idempotent), oldest first; return how many.

        A segment is recycled only after ``store`` returned, so a crash in between means the
        records are stored again, which click ids make harmless.
        """
        moved = 0
        while True:
            with self._lock:
                if not self._sealed:
                    break
                segment = self._sealed[0]
            count = _store_all(os.pread(segment.fd, segment.offset, 0), store)
            os.pwrite(segment.fd, b"\0" * segment.offset, 0)
            os.fdatasync(segment.fd)
            moved += count
            with self._lock:
                self._sealed.pop(0)
                segment.offset = 0
                if self._spare is None:
                    self._spare = segment
                else:
                    segment.close()
                    segment.path.unlink(missing_ok=True)
        return moved + ingest_orphans(self.directory, store)

    def close(self) -> None:
        with self._lock:
            for segment in [*self._sealed, *filter(None, [self._active, self._spare])]:
                segment.close()
            self._active, self._sealed, self._spare = None, [], None


def _reserve(fd: int, size: int) -> None:
    """Write the segment full of zeros once, so later appends overwrite blocks that exist.

    posix_fallocate would reserve the blocks too, but as unwritten extents: the first write
    into each then changes file-system metadata, and every fdatasync waits for a journal
    commit. Zero-filled blocks make a sync cost one data write.
    """
    chunk = b"\0" * (1 << 20)
    for offset in range(0, size, len(chunk)):
        os.pwrite(fd, chunk[: min(len(chunk), size - offset)], offset)
    os.fsync(fd)


def decode(lines: list[bytes]) -> list[dict]:
    records = []
    for line in lines:
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            # A torn last line from a crash mid-write: that click was never acknowledged.
            log.warning("skipping an unreadable click log record")
    return records


def _store_all(data: bytes, store: Callable[[list[dict]], None]) -> int:
    """Decode and store a segment's records a chunk at a time (a full segment decoded at once is ~50 MB)."""
    lines = data.split(b"\0", 1)[0].split(b"\n")
    stored = 0
    for start in range(0, len(lines), STORE_CHUNK):
        records = decode(lines[start : start + STORE_CHUNK])
        if records:
            store(records)
            stored += len(records)
    return stored


def ingest_orphans(directory: Path, store: Callable[[list[dict]], None]) -> int:
    """Ingest and remove segments whose process has died; live processes' segments are locked."""
    moved = 0
    for path in sorted(directory.glob(PATTERN)):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive and owns it
            moved += _store_all(os.pread(fd, os.fstat(fd).st_size, 0), store)
            path.unlink()
        finally:
            os.close(fd)
    return moved
