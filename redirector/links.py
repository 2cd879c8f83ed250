"""Link lookups for the redirector, cached per process and served stale if the database is down."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ada_url
from sqlalchemy.engine import Engine

from affiliate.models import ProgramStatus, UserStatus
from affiliate.urls import destination_allowed, host_of

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
    earns: bool  # the affiliate is active: clicks of others are recorded but never earn
    subs: tuple[str | None, ...]
    query_keys: frozenset[str]  # parameters the destination already carries


class LookupFailed(Exception):
    """The database could not be asked and nothing is cached for this code."""


# Raw SQL: a cache miss is on the shopper's path, and a compiled ORM query costs ten times as much.
LOOKUP_SQL = (
    "SELECT l.id, l.affiliate_id, l.program_id, l.active, l.deep_link, l.sub1, l.sub2, l.sub3, l.sub4, l.sub5, "
    "p.destination_url, p.allowed_hosts, p.fallback_url, p.cookie_days, p.status, u.status "
    "FROM links l JOIN programs p ON p.id = l.program_id JOIN users u ON u.id = l.affiliate_id "
    "WHERE l.code = {mark}"
)


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
        self._sql = ""
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
                    self._sql = LOOKUP_SQL.format(mark="?" if self._engine.dialect.name == "sqlite" else "%s")
            self._local.connection = self._engine.raw_connection()
            cursor = self._local.cursor = self._local.connection.cursor()
        return cursor

    def _query(self, code: str):
        try:
            cursor = self._cursor()
            cursor.execute(self._sql, (code,))
            row = cursor.fetchone()
            self._local.connection.rollback()  # end the read transaction: no snapshot held open
            return row
        except Exception:
            # A broken connection is dropped; the next lookup of this thread opens a fresh one.
            self._local.cursor = None
            connection, self._local.connection = getattr(self._local, "connection", None), None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.invalidate()
            raise

    def _load(self, code: str) -> LinkTarget | None:
        row = self._query(code)
        if row is None:
            return None
        (link_id, affiliate_id, program_id, active, deep_link, s1, s2, s3, s4, s5,
         destination, allowed, fallback, cookie_days, program_status, user_status) = row  # fmt: skip
        hosts = frozenset({host_of(destination), *allowed.split()})
        if deep_link and not destination_allowed(deep_link, hosts, allow_http_loopback=self.allow_http_loopback):
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
            earns=user_status == UserStatus.ACTIVE,
            subs=(s1, s2, s3, s4, s5),
            query_keys=frozenset(params.keys()),
        )
