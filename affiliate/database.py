"""Connection settings that make SQLite safe for concurrent money writes."""

from __future__ import annotations

import fcntl
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 5000
# A transaction PostgreSQL ended to break a deadlock (40P01) or a serialization failure (40001) kept nothing.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
TRANSACTION_ATTEMPTS = 4

log = logging.getLogger(__name__)
T = TypeVar("T")

# Set for work that only reads (the portal's GET requests): its SQLite transactions begin
# DEFERRED, so a page being rendered never holds the write lock that clicks are waiting for.
read_only: ContextVar[bool] = ContextVar("clicktrail_read_only", default=False)


def configure_engine(engine: Engine, *, immediate: bool = True, synchronous: str = "FULL") -> None:
    """Apply per-connection durability settings for the engine's dialect.

    SQLite: WAL, synchronous=FULL, foreign keys, a busy timeout, and every transaction
    opened with BEGIN IMMEDIATE so two writers queue on the lock instead of one failing
    with "database is locked" when it upgrades from a read (docs/guarantees.md,
    *Writers never see "database is locked"*).
    PostgreSQL: the server's own settings; we only insist on synchronous commits.
    ``immediate=False`` is for engines that only read (the redirector's link lookups), so
    they never queue behind writers for a lock they do not need.
    """
    if engine.dialect.name == "sqlite":
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")

        def on_connect(dbapi_connection, connection_record) -> None:
            _sqlite_on_connect(dbapi_connection, synchronous)

        event.listen(engine, "connect", on_connect)
        lock_path = writer_lock_path(engine.url.database)
        if immediate and lock_path:
            queue = _WriterQueue(lock_path)
            event.listen(engine, "begin", queue.begin)
            event.listen(engine.pool, "checkin", queue.release)
        else:
            event.listen(engine, "begin", _sqlite_on_begin if immediate else _sqlite_on_begin_deferred)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_on_connect)


def writer_lock_path(database: str | None) -> str | None:
    """The file SQLite writers queue on, beside the database; None for in-memory databases."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}.writers"


class _WriterQueue:
    """SQLite writers of every thread and process take turns through an flock before BEGIN IMMEDIATE.

    SQLite's own busy handler sleeps and retries (1, 2, 5 ... 100 ms), so under contention
    writers wait far longer than the lock is held and one process can starve another; a
    blocked flock is woken the moment the lock is free. Each pooled connection has its own
    descriptors (flock is per open file), the writers' lock taken at BEGIN IMMEDIATE and given
    back when the connection returns to the pool, after its COMMIT or ROLLBACK.

    An flock is not a queue: a loop of short write transactions (a retention round, a click
    backlog being stored) takes the lock back the instant it lets go, ahead of a writer that
    has waited all along, and a sign-in could wait minutes. So a writer first passes a gate
    (a second flock, held only while waiting for the writers' lock): whoever waits for the
    lock holds the gate, and the writer that just let go must pass the gate behind it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.gate_path = f"{path}.gate"

    def begin(self, connection) -> None:
        if read_only.get():
            connection.exec_driver_sql("BEGIN")
            return
        info = connection.connection.info
        if "writer_fd" not in info:
            info["gate_fd"] = os.open(self.gate_path, os.O_RDWR | os.O_CREAT, 0o600)
            info["writer_fd"] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(info["gate_fd"], fcntl.LOCK_EX)
        try:
            fcntl.flock(info["writer_fd"], fcntl.LOCK_EX)
        finally:
            fcntl.flock(info["gate_fd"], fcntl.LOCK_UN)
        info["writer_locked"] = True
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @staticmethod
    def release(dbapi_connection, connection_record) -> None:
        info = connection_record.info
        if info.pop("writer_locked", False):
            fcntl.flock(info["writer_fd"], fcntl.LOCK_UN)


def _sqlite_on_connect(dbapi_connection, synchronous: str) -> None:
    # Let SQLAlchemy's "begin" event issue the BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN" if read_only.get() else "BEGIN IMMEDIATE")


def _sqlite_on_begin_deferred(connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _postgresql_on_connect(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit TO on")
    cursor.close()
    dbapi_connection.commit()


@contextmanager
def reading(session: Session) -> Iterator[None]:
    """Run the block in its own read-only transaction, ended with the block.

    On SQLite a write transaction holds the database's one write lock from BEGIN IMMEDIATE
    to COMMIT, so a request that must read a lot before writing a little does the reading
    here (alongside other readers, under WAL) and only then starts its short write.

    The block must only read. Its transaction ends with COMMIT when the block succeeds: psycopg drops every
    statement it has prepared on a connection whenever a transaction there is rolled back, and the queries run
    here (the conversion API's lookups) would otherwise be planned afresh by PostgreSQL on every request. (Pages
    still end in a rollback: the reports' queries are faster planned for their own values than prepared.)
    """
    session.rollback()
    token = read_only.set(True)
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    else:
        if session.new or session.dirty or session.deleted:
            session.rollback()
            raise RuntimeError("A block run as reading changed objects in the session; it must only read.")
        session.commit()
    finally:
        read_only.reset(token)


def retryable(error: BaseException) -> bool:
    """Whether the database ended the transaction only to break a deadlock or a serialization conflict."""
    return isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def retrying(session: Session, work: Callable[[], T], *, attempts: int = TRANSACTION_ATTEMPTS, sleep=time.sleep) -> T:
    """Run ``work`` (which reads, writes and commits through ``session``) again when PostgreSQL ends its transaction
    to break a deadlock, as PostgreSQL's manual tells applications to do.

    Why deadlocks happen at all: the click and money rollups are kept by triggers, so two transactions that change
    conversions or commissions of several affiliates (two reviewers deciding overlapping selections, a refund
    beside an approval, the money job beside a reviewer) update the same rollup rows in whatever order their rows
    come. Each service locks its own rows in one order; the rollup rows they share cannot be, so the loser is
    rolled back whole and run again, after a short random pause that lets the winner commit.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as error:
            if not retryable(error) or attempt == attempts:
                raise
            session.rollback()
            log.info("transaction ended to break a deadlock; running it again (attempt %d)", attempt + 1)
            sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def take_turns(session: Session, model, row_id: int) -> None:
    """Writes under one row (a program's coupons, endpoints, enrollments) take turns from here to the commit.

    On PostgreSQL the row is locked FOR NO KEY UPDATE, which rows that merely name it (a sale, a click) do not wait
    for; on SQLite every write transaction already holds the one write lock. A check that counts or searches the
    rows under it before an insert (a limit, a code that must be free) then sees every insert made before its own.
    """
    session.execute(select(model.id).where(model.id == row_id).with_for_update(key_share=True)).all()


def locked(session: Session, row: T) -> T:
    """``row`` read again under a lock held to the commit (PostgreSQL; SQLite's write lock does the same), for a
    change that derives its new values from the old ones: two at once must not both start from the same old ones."""
    session.refresh(row, with_for_update=True)
    return row
