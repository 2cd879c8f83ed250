"""Database engines for the redirector's processes, made on first use inside each process (never before a fork)."""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from affiliate.database import configure_engine


def make_engine(url: str, *, immediate: bool) -> Engine:
    """An engine for link lookups (``immediate=False``) or for click ingest (``immediate=True``)."""
    # One connection per request thread at most; a local SQLite file needs no liveness ping.
    options: dict = {"pool_size": 8, "max_overflow": 56, "pool_pre_ping": not url.startswith("sqlite")}
    if url.startswith("postgresql"):
        # A database that hangs must not hold up ingesting for long: give up and retry later.
        timeouts = "-c lock_timeout=3000 -c statement_timeout=5000"
        options["connect_args"] = {"connect_timeout": 3, "options": timeouts}
        if immediate:
            # The ingester's statements are planned afresh each time, never as prepared statements: a batch's
            # judging lookups asked as a prepared statement got a plan made for whatever the month's partition
            # held when it was prepared (nearly nothing, early in a month), and kept it for the process's life:
            # three times slower once the partition had filled, where planning anew costs under a millisecond.
            options["connect_args"]["prepare_threshold"] = None
    engine = create_engine(url, **options)
    configure_engine(engine, immediate=immediate)
    if immediate and engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_ingest_settings)
    return engine


def _sqlite_ingest_settings(dbapi_connection, connection_record) -> None:
    """Let the ingester's write-ahead log grow to about 40 MB between checkpoints, with a larger page cache.

    Click batches touch index pages all over the file; checkpointing less often writes each
    page back once for many batches instead of once per batch or two.
    """
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=10000")
    dbapi_connection.execute("PRAGMA cache_size=-16384")
