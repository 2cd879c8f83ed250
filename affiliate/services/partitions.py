"""Monthly partitions of the clicks table on PostgreSQL: made ahead of time, dropped whole when purged.

On PostgreSQL the clicks table is partitioned by month of ``clicked_at`` (declarative range
partitioning, one table per UTC calendar month, named ``clicks_pYYYY_MM``) with a default
partition that catches any click outside the months made so far, so that storing a click never
fails for want of a partition. Months are made ``MONTHS_AHEAD`` ahead by the ingester and the
portal's jobs; making a month moves any of its clicks out of the default partition first.

Purging a month of raw clicks drops its partition instead of deleting its rows one by one: the
clicks a conversion or a referral points at (the evidence for money, which retention always
keeps) are copied into a fresh table that takes the month's place. Rows of a month only partly
before the purge cutoff are left to the row-by-row purge.

Because a partitioned table's keys must include its partition column, the primary key is
(id, clicked_at) and the click id is unique with clicked_at (a click id is written once, with
the time it was issued, so a replayed click still collides with itself); conversions and
referrals point at clicks.id without a foreign key there. SQLite keeps the plain table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text

MONTHS_AHEAD = 3
CHECK_SECONDS = 3600  # how often the ingester and the portal's jobs look for missing months: hours to spare
PARENT = "clicks"
DEFAULT = "clicks_pdefault"
# One key for pg_advisory_xact_lock, so that two processes never make or drop the same month at once.
LOCK_KEY = 0x636C69636B73  # "clicks"


@dataclass(frozen=True)
class Month:
    """One month's partition: the clicks with start <= clicked_at < end."""

    name: str
    start: datetime
    end: datetime


def month_of(value: date | datetime) -> Month:
    """The month partition a moment (UTC) falls in."""
    first = date(value.year, value.month, 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Month(
        name=f"{PARENT}_p{first:%Y_%m}",
        start=datetime(first.year, first.month, 1, tzinfo=UTC),
        end=datetime(following.year, following.month, 1, tzinfo=UTC),
    )


def months_between(first: datetime, last: datetime) -> list[Month]:
    """Every month from the one ``first`` falls in to the one ``last`` falls in."""
    months = [month_of(first)]
    while months[-1].end <= last:
        months.append(month_of(months[-1].end))
    return months


def is_partitioned(conn: Connection) -> bool:
    """Whether the clicks table here is partitioned (PostgreSQL after the upgrade that partitions it)."""
    if conn.dialect.name != "postgresql":
        return False
    query = "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'clicks'::regclass)"
    return bool(conn.scalar(text(query)))


def existing(conn: Connection) -> set[str]:
    """The names of the clicks table's partitions."""
    rows = conn.execute(text("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'clicks'::regclass"))
    return {name for (name,) in rows}


def make_month(conn: Connection, month: Month) -> None:
    """Make a month's partition, moving its clicks out of the default partition; the caller holds the lock."""
    # Names and bounds come from month_of, never from input.
    conn.exec_driver_sql(f"CREATE TABLE {month.name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE clicked_at >= :start AND clicked_at < :end RETURNING *) "  # noqa: S608
            f"INSERT INTO {month.name} SELECT * FROM moved"
        ),
        {"start": month.start, "end": month.end},
    )
    _attach(conn, month)


def _attach(conn: Connection, month: Month) -> None:
    conn.exec_driver_sql(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {month.name} "
        f"FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
    )


def ensure_months(conn: Connection, *, now: datetime, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Make the partitions of this month and the next ``months_ahead`` that are missing; their names.

    Runs in the caller's transaction (the caller commits); a no-op where clicks are not partitioned.
    """
    if not is_partitioned(conn):
        return []
    wanted = [month_of(now)]
    for _ in range(months_ahead):
        wanted.append(month_of(wanted[-1].end))
    have = existing(conn)
    missing = [month for month in wanted if month.name not in have]
    if not missing:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    have = existing(conn)  # another process may have made them while we waited for the lock
    made = []
    for month in missing:
        if month.name not in have:
            make_month(conn, month)
            made.append(month.name)
    return made


@dataclass(frozen=True)
class Dropped:
    """What dropping whole months did: clicks gone, clicks kept as evidence, partitions dropped."""

    deleted: int
    kept: int
    months: tuple[str, ...]


EVIDENCE = (
    "EXISTS (SELECT 1 FROM conversions WHERE conversions.click_id = c.id) "
    "OR EXISTS (SELECT 1 FROM referrals WHERE referrals.click_id = c.id)"
)


def drop_months_before(conn: Connection, before: datetime, *, dry_run: bool = False) -> Dropped:
    """Drop every month partition that ends on or before ``before``, keeping the clicks money points at.

    Each month is one statement group in the caller's transaction: its evidence is copied into a fresh
    table, the old partition detached and dropped, and the fresh table attached in its place (or nothing
    attached when no click of the month is evidence). With ``dry_run`` only counts.
    """
    if not is_partitioned(conn):
        return Dropped(0, 0, ())
    if not dry_run:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    deleted = kept = 0
    months = []
    for name in sorted(existing(conn)):
        if name == DEFAULT or not name.startswith(f"{PARENT}_p"):
            continue
        month = month_of(datetime.strptime(name.removeprefix(f"{PARENT}_p"), "%Y_%m"))
        if month.name != name or month.end > before:
            continue
        total = conn.scalar(text(f"SELECT count(*) FROM {name}"))  # noqa: S608
        evidence = conn.scalar(text(f"SELECT count(*) FROM {name} c WHERE {EVIDENCE}"))  # noqa: S608
        if total == evidence:
            continue  # nothing to gain: every click of the month is kept
        deleted, kept = deleted + total - evidence, kept + evidence
        months.append(name)
        if dry_run:
            continue
        spare = f"{name}_kept"
        conn.exec_driver_sql(f"CREATE TABLE {spare} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        conn.exec_driver_sql(f"INSERT INTO {spare} SELECT * FROM {name} c WHERE {EVIDENCE}")  # noqa: S608
        conn.exec_driver_sql(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
        conn.exec_driver_sql(f"DROP TABLE {name}")
        if evidence:
            conn.exec_driver_sql(f"ALTER TABLE {spare} RENAME TO {name}")
            _attach(conn, month)
        else:
            conn.exec_driver_sql(f"DROP TABLE {spare}")
    return Dropped(deleted, kept, tuple(months))
