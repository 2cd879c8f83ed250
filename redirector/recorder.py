"""Group commit: every click is stored (or spooled) before its redirect is answered.

Request threads queue their click; the first one finds no write in progress and becomes
the leader: it takes everything queued (its own click included), stores it in one
transaction, wakes those waiting, and hands the lead to the next waiter if more clicks
queued meanwhile. Many concurrent clicks so share one commit and one fsync, with no
extra thread to hand work to. If the database fails, the batch goes to the local spool
and is replayed once the database takes writes again.

On SQLite the processes of one server also take turns through a file lock, which wakes
the next writer the moment the last one is done, instead of SQLite's busy handler that
sleeps and retries (and lets one process starve the other).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from affiliate.models import Click
from redirector.spool import Spool

log = logging.getLogger(__name__)

COLUMNS = tuple(column.name for column in Click.__table__.columns if column.name != "id")
REPLAY_INTERVAL_SECONDS = 2.0


class _Ticket:
    __slots__ = ("click", "done", "lead", "stored")

    def __init__(self, click: dict) -> None:
        self.click = click
        self.done = threading.Event()
        self.lead = False
        self.stored = False


class ClickRecorder:
    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        spool: Spool,
        *,
        unique_window: timedelta,
        lock_path: str | None = None,
        batch_max: int = 256,
        wait_seconds: float = 10.0,
    ) -> None:
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._store: _Store | None = None
        self.spool = spool
        self.unique_window = unique_window
        self.lock_path = lock_path
        self._lock_fd: int | None = None
        self.batch_max = batch_max
        self.wait_seconds = wait_seconds
        self._mutex = threading.Lock()
        self._pending: list[_Ticket] = []
        self._busy = False
        self._started = False
        self._stopping = threading.Event()
        self._replayer: threading.Thread | None = None

    def record(self, click: dict) -> bool:
        """Store one click; return True once it is in the database or the spool."""
        if not self._started:
            self._start()
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
        """Write one batch, then pass the lead on (or put it down when nothing waits)."""
        with self._mutex:
            batch = self._pending[: self.batch_max]
            del self._pending[: len(batch)]
        try:
            self._write(batch)
        finally:
            with self._mutex:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False

    def _start(self) -> None:
        with self._mutex:
            if self._started:
                return
            self.spool.open()
            if self.lock_path:
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._replayer = threading.Thread(target=self._replay_loop, name="click-spool-replay", daemon=True)
            self._replayer.start()
            self._started = True

    def close(self) -> None:
        """Stop replaying, write what is queued, and close database connections."""
        self._stopping.set()
        if self._replayer is not None:
            self._replayer.join(timeout=self.wait_seconds)
        if self._engine is not None:
            self._engine.dispose()

    @property
    def store(self) -> _Store:
        if self._store is None:
            self._engine = self._engine_factory()
            self._store = _Store(self._engine, self.unique_window)
        return self._store

    def _write(self, batch: list[_Ticket]) -> None:
        clicks = [ticket.click for ticket in batch if ticket.click]
        stored = False
        try:
            with self._exclusive():
                self.store.insert(clicks)
            stored = True
        except Exception:
            log.warning("database refused %d clicks; spooling them", len(clicks), exc_info=True)
            try:
                self.spool.append(_to_json(click) for click in clicks)
                stored = True
            except OSError:
                log.exception("could not spool %d clicks", len(clicks))
        for ticket in batch:
            ticket.stored = stored
            ticket.done.set()

    def _exclusive(self):
        return _FileLock(self._lock_fd)

    def _replay_loop(self) -> None:
        while not self._stopping.wait(REPLAY_INTERVAL_SECONDS):
            self.replay_spool()

    def replay_spool(self) -> int:
        """Move spooled clicks into the database if it takes them; return how many moved."""
        with self._mutex:
            if self._busy:
                return 0  # a leader is writing; try again on the next tick
            self._busy = True
        try:
            with self._exclusive():
                count = self.spool.replay(lambda records: self.store.insert([_from_json(r) for r in records],
                                                                            ignore_duplicates=True))  # fmt: skip
        except Exception:
            log.info("click spool replay deferred: database still refusing", exc_info=True)
            count = 0
        finally:
            with self._mutex:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False
        if count:
            log.warning("replayed %d spooled clicks into the database", count)
        return count


class _FileLock:
    """flock on the shared lock file, if there is one; a no-op otherwise."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


class _Store:
    """Raw, batched SQL for the hot path: one uniqueness query and one executemany per batch."""

    def __init__(self, engine: Engine, unique_window: timedelta) -> None:
        self.engine = engine
        self.unique_window = unique_window
        self.sqlite = engine.dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        columns = ", ".join(COLUMNS)
        values = ", ".join([mark] * len(COLUMNS))
        self.insert_sql = f"INSERT INTO clicks ({columns}) VALUES ({values})"  # noqa: S608 - fixed column names
        conflict = " ON CONFLICT (click_id) DO NOTHING"
        self.insert_ignore_sql = self.insert_sql + conflict
        self.mark = mark
        self.recent_sql = f"SELECT link_id, visitor_id, fingerprint, clicked_at FROM clicks WHERE clicked_at >= {mark}"

    def _time(self, value: datetime) -> datetime | str:
        # SQLite keeps UTC wall time as text, in the same form the ORM's UTCDateTime writes.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds") if self.sqlite else value

    def insert(self, clicks: list[dict], *, ignore_duplicates: bool = False) -> None:
        if not clicks:
            return
        with self.engine.begin() as conn:
            self._mark_unique(conn, clicks)
            rows = [
                tuple(self._time(click[name]) if name == "clicked_at" else click[name] for name in COLUMNS)
                for click in clicks
            ]
            conn.exec_driver_sql(self.insert_ignore_sql if ignore_duplicates else self.insert_sql, rows)

    def _mark_unique(self, conn, clicks: list[dict]) -> None:
        """A click is unique unless its visitor or device clicked the same link within the window.

        One query per batch finds recent clicks of the batch's visitors and devices; the
        batch itself is then walked in order.
        """
        since = self._time(min(click["clicked_at"] for click in clicks) - self.unique_window)
        visitors = list({click["visitor_id"] for click in clicks if click["visitor_id"]})
        devices = list({click["fingerprint"] for click in clicks if click["fingerprint"]})
        seen: dict[tuple, datetime | str] = {}
        if visitors or devices:
            v_marks = ", ".join([self.mark] * len(visitors)) or "NULL"
            f_marks = ", ".join([self.mark] * len(devices)) or "NULL"
            # Only placeholders are formatted into the statement; every value is bound.
            sql = f"{self.recent_sql} AND (visitor_id IN ({v_marks}) OR fingerprint IN ({f_marks}))"
            for link, visitor, device, at in conn.exec_driver_sql(sql, (since, *visitors, *devices)):
                for key in (("v", link, visitor), ("f", link, device)):
                    if key[2] and (key not in seen or at > seen[key]):
                        seen[key] = at
        for click in clicks:
            link, at = click["link_id"], self._time(click["clicked_at"])
            horizon = self._time(click["clicked_at"] - self.unique_window)
            keys = (("v", link, click["visitor_id"]), ("f", link, click["fingerprint"]))
            click["is_unique"] = not any(key in seen and seen[key] >= horizon for key in keys if key[2])
            for key in keys:
                if key[2]:
                    seen[key] = at


def _to_json(click: dict) -> dict:
    """A compact spool record: empty fields left out, the time as ISO 8601."""
    record = {key: value for key, value in click.items() if value is not None}
    record["clicked_at"] = click["clicked_at"].isoformat()
    return record


def _from_json(record: dict) -> dict:
    click = {name: record.get(name) for name in COLUMNS}
    click["clicked_at"] = datetime.fromisoformat(record["clicked_at"])
    return click
