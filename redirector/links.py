"""Link lookups for the redirector, cached per process and served stale if the database is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from affiliate.models import Link, Program, ProgramStatus, User, UserStatus
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


class LookupFailed(Exception):
    """The database could not be asked and nothing is cached for this code."""


QUERY = (
    select(
        Link.id,
        Link.affiliate_id,
        Link.program_id,
        Link.active,
        Link.deep_link,
        Link.sub1,
        Link.sub2,
        Link.sub3,
        Link.sub4,
        Link.sub5,
        Program.destination_url,
        Program.allowed_hosts,
        Program.fallback_url,
        Program.cookie_days,
        Program.status,
        User.status,
    )
    .join(Program, Program.id == Link.program_id)
    .join(User, User.id == Link.affiliate_id)
)


class LinkCache:
    def __init__(self, engine_factory: Callable[[], Engine], ttl_seconds: float) -> None:
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, LinkTarget | None]] = {}
        self._lock = threading.Lock()

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

    def _load(self, code: str) -> LinkTarget | None:
        if self._engine is None:
            self._engine = self._engine_factory()
        with self._engine.connect() as conn:
            row = conn.execute(QUERY.where(Link.code == code)).first()
        if row is None:
            return None
        (link_id, affiliate_id, program_id, active, deep_link, s1, s2, s3, s4, s5,
         destination, allowed, fallback, cookie_days, program_status, user_status) = row  # fmt: skip
        hosts = frozenset({host_of(destination), *allowed.split()})
        if deep_link and not destination_allowed(deep_link, hosts):
            log.warning("link %s deep link is off the program's allowlist now; using the destination", link_id)
            deep_link = None
        return LinkTarget(
            link_id=link_id,
            affiliate_id=affiliate_id,
            program_id=program_id,
            destination=deep_link or destination,
            allowed_hosts=hosts,
            fallback_url=fallback,
            cookie_days=cookie_days,
            redirects=bool(active) and program_status == ProgramStatus.ACTIVE,
            earns=user_status == UserStatus.ACTIVE,
            subs=(s1, s2, s3, s4, s5),
        )
