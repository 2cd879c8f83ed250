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

With ``handoff`` (the redirector's ingester process, see redirector/ingester.py), a process
does not ingest its own segments: a sealed segment is renamed ``sealed-*`` and unlocked, for
the ingester process to store; it zeroes stored segments and leaves them as ``spare-*`` files
that request processes claim instead of writing a new segment full of zeros.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)
STORE_CHUNK = 2000  # records per call of the store: one database transaction

PATTERN = "clicks-*.log"
SEALED_PATTERN = "sealed-*.log"
SPARE_PATTERN = "spare-*.log"
SPARES_KEPT = 4  # zeroed segments left for request processes to claim


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
    def __init__(self, directory: str, segment_bytes: int, *, handoff: bool = False) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.handoff = handoff
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
        claimed = self._claim_spare() if self.handoff else None
        if claimed is not None:
            return claimed
        path = self._own_path()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            _reserve(fd, self.segment_bytes)
        except OSError:
            log.warning("could not reserve %s bytes for a click log segment", self.segment_bytes, exc_info=True)
        return Segment(path, fd, os.fstat(fd).st_size)

    def _own_path(self) -> Path:
        return self.directory / f"clicks-{os.getpid()}-{os.urandom(4).hex()}.log"

    def _claim_spare(self) -> Segment | None:
        """Take a zeroed segment the ingester left: lock it, then rename it ours (only one process can)."""
        for spare in sorted(self.directory.glob(SPARE_PATTERN)):
            try:
                fd = os.open(spare, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path = self._own_path()
                os.rename(spare, path)
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return Segment(path, fd, os.fstat(fd).st_size)
            except OSError:
                pass  # another process took it first
            os.close(fd)
        return None

    def prepare_spare(self) -> None:
        """Have a segment ready for the next seal, made outside the append lock (handoff mode)."""
        with self._lock:
            if self._spare is not None or self._active is None:
                return
        segment = self._new_segment()
        with self._lock:
            if self._spare is None:
                self._spare = segment
                return
        segment.close()
        segment.path.unlink(missing_ok=True)

    def _retire(self, segment: Segment) -> None:
        """A full or sealed segment: keep it for our ingest, or hand it to the ingester process."""
        if not self.handoff:
            self._sealed.append(segment)
            return
        os.rename(segment.path, segment.path.with_name("sealed-" + segment.path.name.removeprefix("clicks-")))
        segment.close()

    @property
    def pending(self) -> int:
        """Bytes written and not yet in the database (handed-off segments counted whole)."""
        with self._lock:
            own = sum(segment.offset for segment in [*self._sealed, *filter(None, [self._active])])
        handed_off = 0
        for path in self.directory.glob(SEALED_PATTERN):
            with suppress(FileNotFoundError):
                handed_off += path.stat().st_size
        return own + handed_off

    def append(self, records: Iterable[dict]) -> None:
        """Write records durably (fdatasync'ed) or raise OSError."""
        fd = self.write(records)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def write(self, records: Iterable[dict]) -> int:
        """Write records in place, not yet durable; return a descriptor of their segment for the caller to
        fdatasync and then close, or raise OSError.

        Records are written under the lock, in offset order, and synced after it, so sealing a
        segment never waits for a disk flush. A sync covers everything written before it began,
        so once it returns the records are on disk, and every record before them: the log
        never has a hole before an acknowledged record. The descriptor is a copy of the
        segment's own, which may be sealed and closed meanwhile.
        """
        data = b"".join([orjson.dumps(record) + b"\n" for record in records])
        with self._lock:
            segment = self._active
            if segment is None:
                raise OSError("click log is not open")
            if segment.offset + len(data) > max(segment.size, self.segment_bytes):
                # Full: seal it and continue in the spare, or a new segment if the disk allows one.
                self._retire(segment)
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
                    self._retire(segment)
                else:
                    segment.close()
                    segment.path.unlink(missing_ok=True)
                segment = self._active = self._new_segment()
                self._write(segment, data)
            return os.dup(segment.fd)

    @staticmethod
    def _write(segment: Segment, data: bytes) -> None:
        written = os.pwrite(segment.fd, data, segment.offset)
        if written != len(data):
            raise OSError("short write to the click log")
        segment.offset += len(data)

    def seal(self) -> None:
        """Start a fresh segment so that everything written so far can be ingested."""
        with self._lock:
            if self._active is None or self._active.offset == 0:
                return
            try:
                fresh = self._spare or self._new_segment()
            except OSError:
                return  # no room for a new one: keep appending here
            self._retire(self._active)
            self._active, self._spare = fresh, None

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
        return moved + ingest_orphans(self.directory, store, spares=self.handoff)

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
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            # A torn last line from a crash mid-write: that click was never acknowledged.
            log.warning("skipping an unreadable click log record")
    return records


def records_end(data: bytes) -> int:
    """Where a segment's records end and the zeros it was reserved with begin.

    Appends go one after another, so the records normally end at the first zero byte. A block of zeros in the
    middle (a damaged disk block) must not hide the records after it: when a record ends after the first zero,
    the records run to that record's end (finding the last newline is a backwards memory scan).
    """
    first = data.find(b"\0")
    if first < 0:
        return len(data)
    last = data.rfind(b"\n")
    return first if last < first else last + 1


def _store_all(data: bytes, store: Callable[[list[dict]], None]) -> int:
    """Decode and store a segment's records a chunk at a time (a full segment decoded at once is ~50 MB).

    Zeros among the records come out of the lines they fall in: a line they tore is then unreadable and skipped,
    as a torn last line is, and the records after them are stored."""
    written = data[: records_end(data)]
    if b"\0" in written:
        log.warning("a click log segment has zeros between its records; reading past them")
        written = written.replace(b"\0", b"")
    lines = written.split(b"\n")
    stored = 0
    for start in range(0, len(lines), STORE_CHUNK):
        records = decode(lines[start : start + STORE_CHUNK])
        if records:
            store(records)
            stored += len(records)
    return stored


def ingest_orphans(directory: Path, store: Callable[[list[dict]], None], *, spares: bool = True) -> int:
    """Ingest segments nobody writes to any more: handed-off ones, and those of processes that died.

    A live process holds a lock on each segment it writes, so those are skipped. A stored
    segment becomes a zeroed spare for request processes to claim, or is removed.
    """
    moved = 0
    paths = sorted(directory.glob(SEALED_PATTERN), key=_mtime) + sorted(directory.glob(PATTERN))
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive and writes to it, or another ingester has it
            if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
                continue  # stored and recycled while we waited for it
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            moved += _store_all(data, store)
            if spares:
                _recycle(directory, path, fd, records_end(data))
            else:
                path.unlink()
        finally:
            os.close(fd)
    return moved


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _recycle(directory: Path, path: Path, fd: int, used: int) -> None:
    """Zero a stored segment's records and keep it as a spare, or remove it when enough are kept."""
    if len(list(directory.glob(SPARE_PATTERN))) >= SPARES_KEPT:
        path.unlink()
        return
    os.pwrite(fd, b"\0" * used, 0)
    os.fdatasync(fd)
    os.rename(path, directory / f"spare-{os.urandom(6).hex()}.log")
