"""Connection settings that make SQLite safe for concurrent money writes."""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy import event
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 5000

# Set for work that only reads (the portal's GET requests): its SQLite transactions begin
# DEFERRED, so a page being rendered never holds the write lock that clicks are waiting for.
read_only: ContextVar[bool] = ContextVar("clicktrail_read_only", default=False)


def configure_engine(engine: Engine, *, immediate: bool = True, synchronous: str = "FULL") -> None:
    """Apply per-connection durability settings for the engine's dialect.

    SQLite: WAL, synchronous=FULL, foreign keys, a busy timeout, and every transaction
    opened with BEGIN IMMEDIATE so two writers queue on the lock instead of one failing
    with "database is locked" when it upgrades from a read (CHECKS.md, C5).
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
        event.listen(engine, "begin", _sqlite_on_begin if immediate else _sqlite_on_begin_deferred)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_on_connect)


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
