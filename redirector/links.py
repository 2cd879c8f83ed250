"""Link lookups for the redirector, cached per process and served stale if the database is down."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ada_url
from sqlalchemy.engine import Engine

from affiliate.models import EnrollmentPolicy, EnrollmentStatus, ProgramStatus, UserStatus
from affiliate.urls import deep_link_problem, host_of

log = logging.getLogger(__name__)

MAX_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class LinkTarget:
    link_id: int
    affiliate_id: int
    program_id: int
    destination: str
    allowed_hosts: frozenset[str]
    fallback_url: str | None
    cookie_days: int
    redirects: bool  # link and program both active
    # Why its clicks never earn, as the click's fraud reasons (JSON), or None when they may: clicks of a
    # suspended affiliate, or of one removed from (or never admitted to) the program, are recorded all the same.
    rejection: str | None
    subs: tuple[str | None, ...]
    query_keys: frozenset[str]  # parameters the destination already carries


def rejection(user_status: str, policy: str, enrolled: str | None, removal_reason: str | None) -> str | None:
    """Why a click on this affiliate's link cannot earn (a fraud-reasons list in JSON), or None.

    The same rule as the partner pages' "may promote": an open program admits everyone it has not removed;
    the others admit only enrolled affiliates.
    """
    if user_status != UserStatus.ACTIVE:
        return _reasons("affiliate_inactive", "the affiliate is not active")
    if enrolled == EnrollmentStatus.REMOVED:
        why = f"removed from the program: {removal_reason}" if removal_reason else "removed from the program"
        return _reasons("affiliate_not_enrolled", why[:500])
    if policy != EnrollmentPolicy.OPEN and enrolled != EnrollmentStatus.ACTIVE:
        return _reasons("affiliate_not_enrolled", "not enrolled in the program")
    return None


def _reasons(rule: str, evidence: str) -> str:
    return json.dumps([{"rule": rule, "action": "reject", "weight": 100, "evidence": evidence}])


class LookupFailed(Exception):
    """The database could not be asked and nothing is cached for this code."""


# Raw SQL: a cache miss is on the shopper's path, and a compiled ORM query costs ten times as much.
SELECT_SQL = (
    "SELECT l.id, l.affiliate_id, l.program_id, l.active, l.deep_link, l.sub1, l.sub2, l.sub3, l.sub4, l.sub5, "
    "p.destination_url, p.allowed_hosts, p.fallback_url, p.cookie_days, p.status, u.status, l.code, "
    "p.enrollment, e.status, e.reason "
    "FROM links l JOIN programs p ON p.id = l.program_id JOIN users u ON u.id = l.affiliate_id "
    "LEFT JOIN enrollments e ON e.program_id = l.program_id AND e.affiliate_id = l.affiliate_id "
)
CODE_COLUMN = 16
LOOKUP_SQL = SELECT_SQL + "WHERE l.code = {mark}"
# The links a process caches before its first request: those that redirect, newest first.
PRELOAD_SQL = SELECT_SQL + "WHERE l.active = {mark} AND p.status = {mark} ORDER BY l.id DESC LIMIT {mark}"


class LinkCache:
    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        ttl_seconds: float,
        click_param: str,
        *,
        allow_http_loopback: bool = False,
    ) -> None:
        self.click_param = click_param
        self.allow_http_loopback = allow_http_loopback
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._mark = "?"
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, LinkTarget | None]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def get(self, code: str) -> LinkTarget | None:
        now = time.monotonic()
        entry = self._entries.get(code)
        if entry is not None and entry[0] > now:
            return entry[1]
        try:
            target = self._load(code)
        except Exception:
            if entry is not None:
                log.warning("link lookup failed; serving cached %s", code, exc_info=True)
                return entry[1]
            raise LookupFailed(code) from None
        if len(self._entries) >= MAX_ENTRIES:
            with self._lock:
                self._entries.clear()
        self._entries[code] = (now + self.ttl, target)
        return target

    def preload(self, limit: int) -> int:
        """Cache up to ``limit`` links that redirect, newest first, in one query; return how many.

        A process that starts cold would otherwise ask the database once per link in its first
        seconds (10,000 links: about 2 s of one core), while shoppers wait. Others are looked up on
        first use. Preloaded entries expire over one TTL, spread out, so they are not asked again at once.
        """
        if limit <= 0:
            return 0
        now = time.monotonic()
        rows = self._fetch(PRELOAD_SQL, (True, ProgramStatus.ACTIVE.value, min(limit, MAX_ENTRIES)))
        loaded = 0
        for index, row in enumerate(rows):
            try:
                target = self._target(row)
            except ValueError:
                log.warning("link %s has a destination that is not a URL; it is looked up when clicked", row[0])
                continue
            self._entries[row[CODE_COLUMN]] = (now + self.ttl * (1 + index / len(rows)) / 2, target)
            loaded += 1
        return loaded

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _cursor(self):
        """A DBAPI cursor of this thread's own reader connection, kept between requests."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._engine_factory()
                    self._mark = "?" if self._engine.dialect.name == "sqlite" else "%s"
            connection = self._local.connection = self._engine.raw_connection()
            if self._engine.dialect.name == "postgresql":
                # Each lookup then commits as it runs: no snapshot is held open after it, no ROLLBACK costs a
                # round trip, and the lookup stays a prepared statement (psycopg drops a connection's prepared
                # statements on every ROLLBACK, and planning the join cost the database more than running it).
                # SQLite's connections already leave a SELECT outside any transaction (configure_engine).
                connection.rollback()
                connection.dbapi_connection.autocommit = True
            cursor = self._local.cursor = connection.cursor()
        return cursor

    def _fetch(self, sql: str, parameters: tuple) -> list:
        """The rows of ``sql``, its bind markers written ``{mark}``, read as a statement of its own (see _cursor)."""
        try:
            cursor = self._cursor()
            cursor.execute(sql.format(mark=self._mark), parameters)
            return cursor.fetchall()
        except Exception:
            # A broken connection is dropped; the next lookup of this thread opens a fresh one.
            self._local.cursor = None
            connection, self._local.connection = getattr(self._local, "connection", None), None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.invalidate()
            raise

    def _load(self, code: str) -> LinkTarget | None:
        rows = self._fetch(LOOKUP_SQL, (code,))
        return self._target(rows[0]) if rows else None

    def _target(self, row) -> LinkTarget:
        (
            link_id,
            affiliate_id,
            program_id,
            active,
            deep_link,
            s1,
            s2,
            s3,
            s4,
            s5,
            destination,
            allowed,
            fallback,
            cookie_days,
            program_status,
            user_status,
            _code,
            policy,
            enrolled,
            removal_reason,
        ) = row
        hosts = frozenset({host_of(destination), *allowed.split()})
        if deep_link and deep_link_problem(deep_link, destination, hosts, allow_http_loopback=self.allow_http_loopback):
            # Judged again as the program stands now, and by today's rules (its port, scheme and path).
            log.warning("link %s deep link is off the program's allowlist now; using the destination", link_id)
            deep_link = None
        url = ada_url.URL(deep_link or destination)
        params = ada_url.URLSearchParams(url.search)
        params.delete(self.click_param)  # the redirector adds its own
        url.search = str(params)
        return LinkTarget(
            link_id=link_id,
            affiliate_id=affiliate_id,
            program_id=program_id,
            destination=url.href,
            allowed_hosts=hosts,
            fallback_url=fallback,
            cookie_days=cookie_days,
            redirects=bool(active) and program_status == ProgramStatus.ACTIVE,
            rejection=rejection(user_status, policy, enrolled, removal_reason),
            subs=(s1, s2, s3, s4, s5),
            query_keys=frozenset(params.keys()),
        )
