"""Column types and defaults shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime (a per-row default)."""
    return datetime.now(UTC)


def in_utc(moment: datetime) -> datetime:
    """An aware ``moment`` as UTC. ValueError when its offset carries it past year 1 or 9999, where UTC has no
    such moment (0001-01-01T00:00+14:00 is a valid RFC 3339 time, and still unstorable)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("outside the years 1 to 9999 once converted to UTC") from error


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every database.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall time. Naive datetimes
    are refused so a local time can never be written by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
