"""Group commit: every click is stored (or spooled) before its redirect is answered.

Request threads hand their click to one writer thread per process and wait. The writer
takes everything that has queued up while it was busy, stores it in one transaction and
wakes the waiters, so many concurrent clicks share one commit and one fsync. If the
database fails, the batch goes to the local spool instead, and is replayed once the
database takes writes again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from affiliate.models import Click, UTCDateTime
from redirector.spool import Spool

log = logging.getLogger(__name__)

CLICKS = Click.__table__
COLUMNS = tuple(column.name for column in CLICKS.columns if column.name != "id")
SEEN_VISITOR = text(
    "SELECT 1 FROM clicks WHERE visitor_id = :key AND clicked_at >= :since AND link_id = :link LIMIT 1"
).bindparams(bindparam("since", type_=UTCDateTime))
SEEN_FINGERPRINT = text(
    "SELECT 1 FROM clicks WHERE fingerprint = :key AND clicked_at >= :since AND link_id = :link LIMIT 1"
).bindparams(bindparam("since", type_=UTCDateTime))
REPLAY_INTERVAL_SECONDS = 2.0


class _Ticket:
    __slots__ = ("click", "done", "stored")

    def __init__(self, click: dict) -> None:
        self.click = click
        self.done = threading.Event()
        self.stored = False


_STOP = _Ticket({})


class ClickRecorder:
    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        spool: Spool,
        *,
        unique_window: timedelta,
        batch_max: int = 256,
        wait_seconds: float = 10.0,
    ) -> None:
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self.spool = spool
        self.unique_window = unique_window
        self.batch_max = batch_max
        self.wait_seconds = wait_seconds
        self._queue: queue.SimpleQueue[_Ticket] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record(self, click: dict) -> bool:
        """Store one click; return True once it is in the database or the spool."""
        self._ensure_started()
        ticket = _Ticket(click)
        self._queue.put(ticket)
        if not ticket.done.wait(self.wait_seconds):
            log.error("click %s not confirmed within %s s", click.get("click_id"), self.wait_seconds)
            return False
        return ticket.stored

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self.spool.open()
                self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
                self._thread.start()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def close(self) -> None:
        """Stop the writer after what is queued, and close database connections."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=self.wait_seconds)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=REPLAY_INTERVAL_SECONDS)
            except queue.Empty:
                self._replay_spool()
                continue
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    ticket = self._queue.get_nowait()
                except queue.Empty:
                    break
                if ticket is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(ticket)
            try:
                self._write(batch)
            except Exception:  # the writer thread must never die
                log.exception("click writer failed")
                for ticket in batch:
                    ticket.done.set()

    def _write(self, batch: list[_Ticket]) -> None:
        clicks = [ticket.click for ticket in batch]
        stored = False
        database_ok = False
        try:
            with self.engine.begin() as conn:
                self._mark_unique(conn, clicks)
                conn.execute(insert(CLICKS), clicks)
            stored = database_ok = True
        except Exception:
            log.warning("database refused %d clicks; spooling them", len(clicks), exc_info=True)
            try:
                self.spool.append(_to_json(click) for click in clicks)
                stored = True
            except OSError:
                log.exception("could not spool %d clicks: they are lost", len(clicks))
        for ticket in batch:
            ticket.stored = stored
            ticket.done.set()
        if database_ok and self.spool.pending:
            self._replay_spool()

    def _mark_unique(self, conn: Connection, clicks: list[dict]) -> None:
        """A click is unique unless its visitor or device clicked the same link within the window."""
        seen: set[tuple] = set()
        for click in clicks:
            link = click["link_id"]
            keys = [("v", link, click["visitor_id"]), ("f", link, click["fingerprint"])]
            unique = not any(key in seen for key in keys)
            if unique:
                since = click["clicked_at"] - self.unique_window
                for statement, value in ((SEEN_VISITOR, click["visitor_id"]), (SEEN_FINGERPRINT, click["fingerprint"])):
                    if value and conn.execute(statement, {"key": value, "since": since, "link": link}).first():
                        unique = False
                        break
            click["is_unique"] = unique
            seen.update(keys)

    def _replay_spool(self) -> None:
        try:
            count = self.spool.replay(self._store_replayed)
        except Exception:
            log.info("click spool replay deferred: database still refusing", exc_info=True)
            return
        if count:
            log.warning("replayed %d spooled clicks into the database", count)

    def _store_replayed(self, records: list[dict]) -> None:
        clicks = [_from_json(record) for record in records]
        with self.engine.begin() as conn:
            self._mark_unique(conn, clicks)
            dialect = conn.dialect.name
            factory = sqlite_insert if dialect == "sqlite" else pg_insert
            # Replays may repeat after a crash between commit and truncation: click ids make it idempotent.
            statement = factory(CLICKS).on_conflict_do_nothing(index_elements=["click_id"])
            conn.execute(statement, clicks)


def _to_json(click: dict) -> dict:
    """A compact spool record: empty fields left out, the time as ISO 8601."""
    record = {key: value for key, value in click.items() if value is not None}
    record["clicked_at"] = click["clicked_at"].isoformat()
    return record


def _from_json(record: dict) -> dict:
    click = {name: record.get(name) for name in COLUMNS}
    click["clicked_at"] = datetime.fromisoformat(record["clicked_at"])
    return click
