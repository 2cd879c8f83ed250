"""Reports and CSV exports may read a streaming replica (``DATABASE_REPLICA_URL``), when it is close enough.

Reports are the portal's heaviest reads, and they only read: on a site with a PostgreSQL streaming
replica they can run there and leave the primary to clicks, conversions and money. A report must
still be honest, so the replica is used only while its lag stays within ``REPLICA_MAX_LAG_SECONDS``:

- lag is zero when the replica has replayed everything the primary has written (their WAL positions
  agree), else the time since the last transaction it replayed;
- a replica that is missing, refuses connections, lags more or holds another schema than the primary (its
  migration differs: a replica of another database) is passed over for the primary, and looked at again
  after ``REPLICA_CHECK_SECONDS``, so a failing replica costs one failed connection per interval, not one
  per page;
- a replica that fails between two checks (stopped, restarted, a query refused) fails the page's query on it:
  the replica is passed over from then on, and the page is drawn again on the primary
  (``affiliate.Portal.dispatch_request``), so the person sees the report, not a 500.

Money pages, payout files and everything that writes always use the primary; only the views that
call ``reading_session()`` read the replica.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from affiliate.database import configure_engine
from affiliate.extensions import db

log = logging.getLogger(__name__)
EXTENSION = "clicktrail_replica"
SCHEMA_VERSION = "SELECT version_num FROM alembic_version"


@dataclass
class Choice:
    """Whether to read the replica, until when that holds, and why (for the log and the tests)."""

    use_replica: bool
    until: float
    reason: str


class Replica:
    """The replica's engine and the latest judgement of its lag, shared by a process's threads."""

    def __init__(self, url: str, max_lag_seconds: float, check_seconds: float) -> None:
        # Short timeouts: a replica that hangs must cost a page little before the primary takes over.
        self.engine: Engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 2, "options": "-c statement_timeout=30000"},
        )
        configure_engine(self.engine, immediate=False)
        self.max_lag = max_lag_seconds
        self.check_seconds = check_seconds
        self._choice = Choice(False, 0.0, "not checked yet")
        self._lock = threading.RLock()  # a failed check reports itself (mark_down) while the check holds it

    def choice(self, primary: Engine, clock=time.monotonic) -> Choice:
        """The current judgement, looked at again once it is ``check_seconds`` old."""
        with self._lock:
            if clock() < self._choice.until:
                return self._choice
            use, reason = self._judge(primary)
            if not use:
                log.warning("reports read the primary: %s", reason)
            self._choice = Choice(use, clock() + self.check_seconds, reason)
            return self._choice

    def mark_down(self, reason: str, clock=time.monotonic) -> None:
        """Pass the replica over until the next check: a query on it failed."""
        with self._lock:
            self._choice = Choice(False, clock() + self.check_seconds, reason)
        log.warning("reports read the primary: %s", reason)

    def _judge(self, primary: Engine) -> tuple[bool, str]:
        try:
            with primary.connect() as conn:
                written = conn.scalar(text("SELECT pg_current_wal_lsn()"))
                schema = conn.scalar(text(SCHEMA_VERSION))
            with self.engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(:written, pg_last_wal_replay_lsn()), "
                        "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
                    ),
                    {"written": written},
                ).one()
                replica_schema = conn.scalar(text(SCHEMA_VERSION))
        except SQLAlchemyError as error:
            return False, f"the replica cannot be reached or read ({type(error).__name__})"
        in_recovery, behind_bytes, since_replay = row
        if not in_recovery:
            return False, "DATABASE_REPLICA_URL is not a replica (it is not in recovery)"
        if replica_schema != schema:
            return False, f"the replica's schema is at migration {replica_schema}, the primary's at {schema}"
        if behind_bytes is not None and behind_bytes <= 0:
            return True, "caught up"
        lag = float(since_replay) if since_replay is not None else float("inf")
        if lag > self.max_lag:
            return False, f"the replica lags {lag:.1f} s, more than REPLICA_MAX_LAG_SECONDS ({self.max_lag:g})"
        return True, f"lags {lag:.1f} s"


def init_app(app: Flask) -> None:
    """Make the replica's engine when DATABASE_REPLICA_URL is set (on PostgreSQL); close sessions after requests."""
    url = app.config.get("DATABASE_REPLICA_URL")
    if not url:
        return
    if not url.startswith("postgresql"):
        raise SystemExit("clicktrail: DATABASE_REPLICA_URL must be a PostgreSQL streaming replica")
    replica = Replica(url, float(app.config["REPLICA_MAX_LAG_SECONDS"]), float(app.config["REPLICA_CHECK_SECONDS"]))
    app.extensions[EXTENSION] = replica

    @event.listens_for(replica.engine, "handle_error")
    def failed(context) -> None:
        replica.mark_down(f"a query failed on the replica ({type(context.original_exception).__name__})")
        if has_app_context():
            g.replica_failed = True

    app.teardown_appcontext(_close)


def reading_session() -> Session:
    """A session for a report or export: the replica's while it is close enough, else the primary's own."""
    replica: Replica | None = current_app.extensions.get(EXTENSION)
    if replica is None:
        return db.session
    if "replica_session" not in g:
        choice = replica.choice(db.engine)
        g.replica_session = Session(replica.engine) if choice.use_replica else None
    return g.replica_session or db.session


def failed_over() -> bool:
    """Whether this request's reads failed on the replica (which is now passed over): the caller may draw the page
    again, and reading_session() then gives the primary's session."""
    if not g.pop("replica_failed", False):
        return False
    session = g.pop("replica_session", None)
    if session is not None:
        session.close()
    db.session.rollback()
    return True


def _close(exception: BaseException | None) -> None:
    session = g.pop("replica_session", None)
    if session is not None:
        session.close()
