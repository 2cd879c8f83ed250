"""Click and visitor ids: 128 random bits behind the time they were issued, in milliseconds."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = 10  # characters of time: 50 bits of milliseconds


def new_id() -> str:
    """A click or visitor id: 128 random bits (22 URL-safe characters) behind the time in ms.

    The time prefix (10 Crockford base-32 characters, sorting as the clock does) makes new ids
    land at the end of their database indexes instead of on a random page of them.
    """
    ms = time.time_ns() // 1_000_000
    prefix = "".join(CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5))
    return prefix + secrets.token_urlsafe(16)


def issued_at(value: str) -> datetime | None:
    """When an id from new_id was issued; None for a value of another form."""
    if len(value) < PREFIX + 16:
        return None
    ms = 0
    for char in value[:PREFIX]:
        digit = CROCKFORD.find(char)
        if digit < 0:
            return None
        ms = ms * 32 + digit
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
