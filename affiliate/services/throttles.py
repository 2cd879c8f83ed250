"""Throttles that slow a guesser down without locking the owner out.

A key (an email tried from one address, an address on its own, account creation from an address) may
fail ``free`` times. From then on each attempt must wait: the failure that uses up the allowance sets
a wait of ``first_delay``, and every further failure doubles it, up to ``longest_delay``. A key forgets
its failures after ``forget_after`` without one. An attempt made while its key must still wait is
refused with how long is left (the portal answers 429 with Retry-After), and is not counted.

Attempts are counted before the password is checked, under a lock on each key's row
(SELECT ... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so parallel attempts queue on the
row and the one that uses up the allowance sets the wait every later one meets. An attempt that
turns out right gives its count back (``forgive``).

Keys are stored as keyed digests (HMAC-SHA256 with the server's secret key), so the table holds no email or
address in the clear, nor a digest that anyone with the table but without the secret could test a guessed email
against. A key of two parts (an email at an address) is each part's digest side by side, so erasing a person
forgets every key that begins with their email's (``forget``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from affiliate.models import Throttle, UTCDateTime


@dataclass(frozen=True)
class Limit:
    scope: str
    free: int
    first_delay: timedelta
    longest_delay: timedelta
    forget_after: timedelta


class Throttled(Exception):
    """A key must wait before its next attempt; the message is safe to show."""

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after_seconds = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(f"Too many attempts. Try again in {_spoken(self.retry_after_seconds)}.")


def _spoken(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def delay_after(limit: Limit, failures: int) -> timedelta | None:
    """The wait before the next attempt once ``failures`` are counted; None within the allowance."""
    if failures < limit.free:
        return None
    doublings = min(failures - limit.free, 40)  # 2**40 first delays is far past any longest delay
    return min(limit.first_delay * 2**doublings, limit.longest_delay)


KEY_LENGTH = 64  # hex characters in a stored key


def key_of(secret: str, *parts: str) -> str:
    """The stored key of ``parts`` (an address; an email and an address): each part's keyed digest, cut to its
    share of the 64 characters, side by side."""
    width = KEY_LENGTH // len(parts)
    return "".join(_digest(secret, part)[:width] for part in parts)


def forget(session: Session, secret: str, first_part: str) -> int:
    """Delete every key whose first part is ``first_part`` (an erased person's email), in every scope."""
    prefix = _digest(secret, first_part)[: KEY_LENGTH // 2]
    return session.execute(delete(Throttle).where(Throttle.key_hash.startswith(prefix, autoescape=True))).rowcount


def _digest(secret: str, part: str) -> str:
    return hmac.new(
        secret.encode(), b"throttle\x00" + part.encode("utf-8", "surrogatepass"), hashlib.sha256
    ).hexdigest()


# ON CONFLICT DO NOTHING (SQLite >= 3.35 and PostgreSQL): the row exists afterwards, whoever made it,
# so it can be locked; no savepoint or retry is needed when two attempts create it at once.
_ENSURE = text(
    "INSERT INTO throttles (scope, key_hash, failures, last_failure_at) VALUES (:scope, :key, 0, :now) "
    "ON CONFLICT DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime()))


def count_attempt(session: Session, keys: list[tuple[Limit, str]], *, now: datetime) -> None:
    """Count one attempt against every key, or raise Throttled (counting nothing) if any key must wait.

    Rows are locked in (scope, key) order so two attempts sharing keys never deadlock. The caller
    commits at once, before any slow work, so the lock is held for a few statements only.
    """
    rows = []
    for limit, key in sorted(keys, key=lambda pair: (pair[0].scope, pair[1])):
        session.execute(_ENSURE, {"scope": limit.scope, "key": key, "now": now})
        row = session.execute(
            select(Throttle.failures, Throttle.last_failure_at, Throttle.blocked_until)
            .where(Throttle.scope == limit.scope, Throttle.key_hash == key)
            .with_for_update()
        ).one()
        failures = 0 if now - row.last_failure_at >= limit.forget_after else row.failures
        rows.append((limit, key, failures, row.blocked_until if failures else None))
    waits = [blocked - now for _, _, _, blocked in rows if blocked is not None and blocked > now]
    if waits:
        raise Throttled(max(waits))
    for limit, key, failures, _ in rows:
        delay = delay_after(limit, failures + 1)
        session.execute(
            update(Throttle)
            .where(Throttle.scope == limit.scope, Throttle.key_hash == key)
            .values(failures=failures + 1, last_failure_at=now, blocked_until=now + delay if delay else None)
        )


def forgive(session: Session, *, clear: list[tuple[Limit, str]], give_back: list[tuple[Limit, str]]) -> None:
    """After a right password: forget the ``clear`` keys, and take one attempt off each ``give_back`` key.

    A wait already set on a ``give_back`` key stays: one right password from an address does not
    excuse the failures others made from it.
    """
    for limit, key in clear:
        session.execute(delete(Throttle).where(Throttle.scope == limit.scope, Throttle.key_hash == key))
    for limit, key in give_back:
        session.execute(
            update(Throttle)
            .where(Throttle.scope == limit.scope, Throttle.key_hash == key, Throttle.failures > 0)
            .values(failures=Throttle.failures - 1)
        )
