"""The request side of clicks: each is made durable in the click log before its redirect is answered.

Request threads queue their click; the first one finds no append in progress and becomes
the leader: it writes everything queued (its own click included) to the click log with
one fdatasync, wakes those waiting, and hands the lead to the next waiter if more clicks
queued meanwhile. Many concurrent clicks so share one sync, with no thread hand-off. On an
event loop (RSGI) the same happens without threads (``_LoopQueue``).

The clicks are then moved into the database by an ingester (redirector/clickstore.py does the
database work), so the shopper never waits for index updates and a database that is down or
full only makes the log longer until it is back. The ingester is a thread of each process
(``CLICK_INGESTER=thread``), or one process of its own per click log directory (``process``,
see redirector/ingester.py), which keeps that work off the workers; this module then only seals
segments for it and keeps one running. On SQLite the processes of one server take turns through
a file lock, which wakes the next writer the moment the last one is done (SQLite's own busy
handler sleeps and retries, and lets one process starve another).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

from sqlalchemy.engine import Engine

from redirector.clicklog import ClickLog
from redirector.clickrecord import LoggedClick
from redirector.clickstore import RETRY_SECONDS, ClickStore, attempt_ingest, offer_rejected, store_records
from redirector.datasync import AioSync, ThreadSync, open_data_sync

log = logging.getLogger(__name__)

INGEST_INTERVAL_SECONDS = 0.05
SEAL_SECONDS = 0.5  # process mode: how long a click may wait in a worker's open segment
SUPERVISE_SECONDS = 2.0  # process mode: how often a worker checks that an ingester runs
# Group commit on an event loop, as PostgreSQL's commit_delay and commit_siblings: when a sync finishes
# and fewer than GROUP_MIN clicks wait, they wait up to GROUP_WAIT_SECONDS for company, so the kernel
# makes fewer, larger syncs (each a write and a disk cache flush, on another core), and a busy server
# answers more redirects a second than with a sync per small batch.
GROUP_MIN = 8
GROUP_WAIT_SECONDS = 0.0005


class _Ticket:
    __slots__ = ("click", "done", "lead", "stored")

    def __init__(self, click: LoggedClick) -> None:
        self.click = click
        self.done = threading.Event()
        self.lead = False
        self.stored = False


class ClickRecorder:
    """A process's click log writer: clicks made durable in group commits, then ingested here or handed on."""

    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        click_log: ClickLog,
        *,
        unique_window: timedelta,
        geoip_database: str | None = None,
        batch_max: int = 256,
        wait_seconds: float = 10.0,
        ingester_process: dict | None = None,
    ) -> None:
        """``ingester_process``: settings for an ingester process (process mode); None ingests in a thread here."""
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._store: ClickStore | None = None
        self.log = click_log
        self.unique_window = unique_window
        self.geoip_database = geoip_database
        self.batch_max = batch_max
        self.wait_seconds = wait_seconds
        self._mutex = threading.Lock()
        self._pending: list[_Ticket] = []
        self._busy = False
        self._started = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._ingester: threading.Thread | None = None
        self._ingest_lock = threading.Lock()
        self.database_ok = True
        self._loop_queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        self.appender: ThreadPoolExecutor | None = None
        self.ingester_settings = ingester_process
        self._ingester_process: subprocess.Popen | None = None

    def record(self, click: LoggedClick) -> bool:
        """Make one click durable; return True once it is in the click log."""
        if not self._started:
            self.start()
        ticket = _Ticket(click)
        with self._mutex:
            self._pending.append(ticket)
            lead = not self._busy
            self._busy = True
        if not lead:
            if not ticket.done.wait(self.wait_seconds):
                log.error("click %s not confirmed within %s s", click.get("click_id"), self.wait_seconds)
                return False
            if not ticket.lead:
                return ticket.stored
        self._lead()
        return ticket.stored

    def _lead(self) -> None:
        """Append one batch, then pass the lead on (or put it down when nothing waits)."""
        with self._mutex:
            batch = self._pending[: self.batch_max]
            del self._pending[: len(batch)]
        stored = False
        try:
            self.log.append([ticket.click for ticket in batch])
            stored = True
        except Exception:
            log.exception("could not write %d clicks to the click log", len(batch))
        finally:
            for ticket in batch:
                ticket.stored = stored
                ticket.done.set()
            with self._mutex:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False
        self._wake.set()

    async def record_async(self, click: LoggedClick) -> bool:
        """Make one click durable without holding a thread; True once it is in the click log.

        For an event loop (the RSGI front door): clicks queue on the loop, which writes the
        queue to the click log and has it fdatasync'ed (see _LoopQueue) while it goes on
        answering. When that sync is done, whatever queued meanwhile goes next, as one batch.
        """
        if not self._started:
            self.start()
        loop = asyncio.get_running_loop()
        queue = self._loop_queues.get(loop)
        if queue is None:
            for old in [old for old in self._loop_queues if old.is_closed()]:
                self._loop_queues.pop(old).close()
            queue = self._loop_queues[loop] = _LoopQueue(loop, self)
        return await queue.put(click)

    def open_data_sync(self, loop: asyncio.AbstractEventLoop) -> AioSync | ThreadSync:
        """How a loop has its click log writes synced: Linux AIO where there is, else the appender thread."""
        return open_data_sync(loop, self.appender)

    def start(self) -> None:
        """Open the click log and start the sealer (and ingester) or ingester thread; harmless to call again."""
        with self._mutex:
            if self._started:
                return
            self.log.open()
            loop, name = (
                (self._seal_loop, "click-sealer") if self.ingester_settings else (self._ingest_loop, "click-ingester")
            )
            self._ingester = threading.Thread(target=loop, name=name, daemon=True)
            self._ingester.start()
            self.appender = ThreadPoolExecutor(1, thread_name_prefix="click-appender")
            self._started = True

    def yield_to_ingester(self, nice: int) -> int:
        """Lower every thread of this process but the recorder's own by ``nice``; return how many were lowered.

        The recorder's thread stores the clicks (thread mode) or starts the ingester process, which inherits
        its priority (process mode). A thread made later inherits the priority of the thread that made it.
        Raising a nice value needs no privilege; lowering it again would, so this is for a worker's life.
        """
        if nice <= 0 or self._ingester is None:
            return 0
        keep = self._ingester.native_id
        lowered = 0
        try:
            tasks = [int(task) for task in os.listdir("/proc/self/task")]
        except OSError:
            log.warning("cannot list this process's threads (no /proc); the redirector keeps its CPU priority")
            return 0
        for tid in tasks:
            if tid == keep:
                continue
            try:
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
                lowered += 1
            except OSError:  # the thread ended meanwhile
                continue
        return lowered

    def flush(self, timeout: float = 10.0) -> bool:
        """Ingest everything logged so far; return True when the log is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ingest()
            if not self.log.pending:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Ingest what is logged (if the database takes it), stop, and close connections; call it once the
        event loops that recorded clicks have stopped."""
        self._stopping.set()
        self._wake.set()
        if self._ingester is not None:
            self._ingester.join(timeout=self.wait_seconds)
        for queue in self._loop_queues.values():
            queue.close()
        self._loop_queues.clear()
        if self.appender is not None:
            self.appender.shutdown(wait=True)
        if self._ingester_process is not None:
            # What it was storing stays in its segment, to be stored again below (click ids make that harmless).
            self._ingester_process.terminate()
            self._ingester_process.wait(timeout=self.wait_seconds)
        if self._started:
            self.ingest()
        self.log.close()
        if self._store is not None:
            self._store.close()
        if self._engine is not None:
            self._engine.dispose()

    @property
    def store(self) -> ClickStore:
        """The click store of this process's ingester thread, made (with its engine) on first use."""
        if self._store is None:
            self._engine = self._engine_factory()
            self._store = ClickStore(self._engine, self.unique_window, self.geoip_database)
        return self._store

    def _ingest_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(INGEST_INTERVAL_SECONDS if self.database_ok else RETRY_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            # Let a few more clicks join the batch: bigger batches share index work.
            time.sleep(INGEST_INTERVAL_SECONDS)
            self.ingest()

    def _seal_loop(self) -> None:
        """Process mode: hand the open segment to the ingester every SEAL_SECONDS, and keep one running."""
        self._supervise()  # at once: the first clicks should not wait for an ingester to be started
        supervised = time.monotonic()
        try:
            self.log.prepare_spare()  # the first seal then needs no new segment (written under the log's lock)
        except OSError:
            log.warning("could not prepare a click log segment", exc_info=True)
        while not self._stopping.wait(SEAL_SECONDS):
            try:
                self.log.seal()
                self.log.prepare_spare()
            except OSError:
                log.warning("could not seal the click log segment", exc_info=True)
            if time.monotonic() - supervised >= SUPERVISE_SECONDS:
                supervised = time.monotonic()
                self._supervise()

    def _supervise(self) -> None:
        from redirector import ingester  # run as `python -m redirector.ingester`: not imported with the package

        if self._ingester_process is not None and self._ingester_process.poll() is not None:
            self._ingester_process = None  # reaped
        try:
            lock = ingester.claim(self.log.directory) if self._ingester_process is None else None
            if lock is not None:
                self._ingester_process = ingester.spawn(self.ingester_settings, lock)
        except OSError:
            log.warning("could not start the click ingester process", exc_info=True)

    def ingest(self) -> int:
        """Move logged clicks into the database; return how many moved."""
        with self._ingest_lock:
            self.log.seal()
            moved = attempt_ingest(partial(self.log.ingest, self._store_records), database_ok=self.database_ok)
            self.database_ok = moved is not None
            return moved or 0

    def offer_rejected(self) -> int:
        """Offer the records set aside in the click log directory again; return how many were offered (those
        refused again are set aside anew)."""
        with self._ingest_lock:
            offered = attempt_ingest(partial(offer_rejected, self.store, self.log.directory), database_ok=True)
            self.database_ok = offered is not None
            return offered or 0

    def _store_records(self, records: list[dict]) -> None:
        store_records(self.store, records, self.log.directory)


class _LoopQueue:
    """Clicks waiting on one event loop for their append; touched only from that loop's thread.

    A batch is written to the click log on the loop (a copy into the page cache) and synced by
    ``datasync`` (Linux AIO, else a thread) while the loop goes on; clicks arriving meanwhile
    form the next batch.

    A disk that hangs must not hold shoppers: once a sync has run past the recorder's wait,
    its clicks and every click queued behind it are answered as not stored (the shopper lands
    without a click id), and still written when the disk comes back.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, recorder: ClickRecorder) -> None:
        self.loop = loop
        self.recorder = recorder
        self.datasync = recorder.open_data_sync(loop)
        self.waiting: list[tuple[LoggedClick, asyncio.Future]] = []
        self.appending = False
        self.stalled = False
        self.gathering: asyncio.TimerHandle | None = None  # a small batch waiting for company

    def put(self, click: LoggedClick) -> asyncio.Future:
        future = self.loop.create_future()
        self.waiting.append((click, future))
        if self.stalled:
            future.set_result(False)
        elif not self.appending:
            self._append_next()
        elif self.gathering is not None and len(self.waiting) >= GROUP_MIN:
            self.gathering.cancel()
            self._append_next()
        return future

    def _append_next(self) -> None:
        self.gathering = None
        recorder = self.recorder
        batch, self.waiting = self.waiting[: recorder.batch_max], self.waiting[recorder.batch_max :]
        self.appending = True
        timer = self.loop.call_later(recorder.wait_seconds, self._stall, batch)
        try:
            fd = recorder.log.write([click for click, _ in batch])
        except Exception as error:
            self._appended(error, batch, timer)
            return
        done = partial(self._synced, fd, batch, timer)
        try:
            self.datasync.submit(fd, done)
        except OSError:
            log.warning("the kernel refused an AIO fdatasync; the click log is synced in a thread now", exc_info=True)
            self.datasync.close()
            self.datasync = ThreadSync(self.loop, recorder.appender)
            self.datasync.submit(fd, done)

    def _synced(self, fd: int, batch: list, timer: asyncio.TimerHandle, error: OSError | None) -> None:
        os.close(fd)
        if error is None and self.recorder.ingester_settings is None:
            self.recorder._wake.set()  # this process's ingester thread
        self._appended(error, batch, timer)

    def _stall(self, batch: list) -> None:
        log.error("the click log has not confirmed an append within %s s", self.recorder.wait_seconds)
        self.stalled = True
        self._settle(batch, False)
        self._settle(self.waiting, False)

    def _appended(self, error: BaseException | None, batch: list, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        if error is not None:
            log.error("could not write %d clicks to the click log", len(batch), exc_info=error)
        self._settle(batch, error is None)
        self.appending = self.stalled = False
        if len(self.waiting) >= GROUP_MIN:
            self._append_next()
        elif self.waiting:
            self.appending = True  # those arriving meanwhile join the batch
            self.gathering = self.loop.call_later(GROUP_WAIT_SECONDS, self._append_next)

    @staticmethod
    def _settle(batch: list, stored: bool) -> None:
        for _, future in batch:
            if not future.done():
                future.set_result(stored)

    def close(self) -> None:
        self.datasync.close()
