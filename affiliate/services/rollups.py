"""Click rollups: raw, human and unique clicks per UTC day, affiliate, program and dimension value.

Reports read these instead of raw clicks, so a dashboard sums a few hundred rows however many
millions of clicks there are. They are kept up to date incrementally: the ingester adds each
batch's counts in the transaction that inserts the batch (``redirector.clickstore.ClickStore.insert``),
so they never disagree with the clicks table, even after a crash. ``flask rollup --rebuild``
recomputes them from raw clicks; days whose raw clicks were purged keep their rollups, since
they can no longer be recomputed.

Conversions and commissions are rolled up per UTC day, affiliate and program by database
triggers (created in migration 0006) rather than by the code that changes them: their status keeps
changing after they are stored (review, refunds, approval, payouts), in many places, and a
trigger follows every one of those changes in its own transaction. An overview over 100,000
conversions then sums a few thousand rows instead of joining every conversion to its
commissions (300 ms on SQLite even through covering indexes). Breakdowns by a click's
dimension still read the conversions of the range themselves: one affiliate's are few.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import orjson
from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, text, update
from sqlalchemy.orm import Session, aliased

from affiliate.models import Click, ClickRollup, Commission, CommissionRollup, Conversion, ConversionRollup, RollupState
from affiliate.services.traffic import dimension_values, is_human

Key = tuple[str, date, int, int, str]  # dimension, day, affiliate, program, value
COUNTERS = ("raw_clicks", "human_clicks", "unique_clicks")
KEY_COLUMNS = ("dimension", "day", "affiliate_id", "program_id", "value")
STATE_ID = 1
REBUILD_CHUNK = 20_000
LEASE = timedelta(minutes=10)  # renewed with every chunk; a crashed command frees it after this long
# What a rollup is computed from; the rebuild and the check read only these columns.
CLICK_FIELDS = (
    Click.id,
    Click.link_id,
    Click.affiliate_id,
    Click.program_id,
    Click.clicked_at,
    Click.country,
    Click.device_type,
    Click.browser,
    Click.referrer,
    Click.sub1,
    Click.sub2,
    Click.sub3,
    Click.sub4,
    Click.sub5,
    Click.is_bot,
    Click.bot_reason,
    Click.is_unique,
    Click.fraud_action,
    Click.fraud_reasons,
)


class MaintenanceBusy(Exception):
    """Another purge or rebuild holds the lease."""


def aggregate(clicks: Iterable[Mapping], into: dict[Key, list[int]] | None = None) -> dict[Key, list[int]]:
    """Add clicks (with their final unique flag and fraud verdict) to per-key [raw, human, unique] counts."""
    totals: dict[Key, list[int]] = {} if into is None else into
    for click in clicks:
        human = is_human(click["is_bot"], click["fraud_action"])
        unique = human and bool(click["is_unique"])
        day = click["clicked_at"].astimezone(UTC).date()
        affiliate_id, program_id = click["affiliate_id"], click["program_id"]
        for dimension, value in dimension_values(click):
            key = (dimension, day, affiliate_id, program_id, value)
            counts = totals.get(key)
            if counts is None:
                totals[key] = [1, int(human), int(unique)]
            else:
                counts[0] += 1
                counts[1] += human
                counts[2] += unique
    return totals


def _upsert_sql(values: str) -> str:
    columns = ", ".join((*KEY_COLUMNS, *COUNTERS))
    added = ", ".join(f"{name} = click_rollups.{name} + excluded.{name}" for name in COUNTERS)
    # Fixed column names and placeholders only; every value is bound.
    return (
        f"INSERT INTO click_rollups ({columns}) {values} ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {added}"
    )


# SQLite 3.24+: one prepared statement run per row, in process. PostgreSQL: every row in one
# statement, as one JSON parameter: a row-by-row executemany there cost twice as much as one statement,
# and psycopg builds an array parameter element by element in Python, where orjson writes the JSON in C.
SQLITE_UPSERT = _upsert_sql(f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + len(COUNTERS)))})")
# In key order, so that concurrent writers (an ingester lane and a rollup rebuild's chunk) lock rows in one
# order and cannot deadlock; the database sorts them in C, several times faster than Python's sort of the keys.
POSTGRESQL_UPSERT = _upsert_sql(
    "SELECT * FROM json_to_recordset(%s::json) AS r(dimension varchar, day date, affiliate_id int,"
    " program_id int, value varchar, raw_clicks bigint, human_clicks bigint, unique_clicks bigint)"
    " ORDER BY dimension, day, affiliate_id, program_id, value"
)


def upsert(connection: Connection, totals: Mapping[Key, list[int]]) -> None:
    """Add counts to the rollups in the connection's transaction: INSERT ... ON CONFLICT DO UPDATE.

    On PostgreSQL the rows go in key order (see POSTGRESQL_UPSERT); SQLite lets one writer in at a time.
    """
    if not totals:
        return
    rows = totals.items()
    if connection.dialect.name == "postgresql":
        records = [
            {
                "dimension": dimension,
                "day": day,
                "affiliate_id": affiliate_id,
                "program_id": program_id,
                "value": value,
                "raw_clicks": raw,
                "human_clicks": human,
                "unique_clicks": unique,
            }
            for (dimension, day, affiliate_id, program_id, value), (raw, human, unique) in rows
        ]
        connection.exec_driver_sql(POSTGRESQL_UPSERT, (orjson.dumps(records).decode(),))
    else:
        connection.exec_driver_sql(
            SQLITE_UPSERT, [(dimension, day.isoformat(), *rest, *counts) for (dimension, day, *rest), counts in rows]
        )


def add(session: Session, totals: Mapping[Key, list[int]]) -> None:
    """Add counts to the rollups in the session's transaction."""
    upsert(session.connection(), totals)


def take_lease(session: Session, *, now: datetime) -> str:
    """Claim the maintenance lease for a purge or rebuild; raise MaintenanceBusy while another holds it."""
    token = secrets.token_hex(16)
    claimed = session.execute(
        update(RollupState)
        .where(RollupState.id == STATE_ID)
        .where((RollupState.lease_holder.is_(None)) | (RollupState.lease_until < now))
        .values(lease_holder=token, lease_until=now + LEASE)
    ).rowcount
    if claimed != 1:
        raise MaintenanceBusy("Another purge or rollup rebuild is running; try again when it has finished.")
    return token


def renew_lease(session: Session, token: str, *, now: datetime) -> None:
    """Extend the lease; raise MaintenanceBusy if it lapsed and another command took it."""
    renewed = session.execute(
        update(RollupState)
        .where(RollupState.id == STATE_ID, RollupState.lease_holder == token)
        .values(lease_until=now + LEASE)
    ).rowcount
    if renewed != 1:
        raise MaintenanceBusy("The maintenance lease lapsed and another command took it; stopping.")


def release_lease(session: Session, token: str) -> None:
    session.execute(
        update(RollupState)
        .where(RollupState.id == STATE_ID, RollupState.lease_holder == token)
        .values(lease_holder=None, lease_until=None)
    )


def purged_before(session: Session) -> date | None:
    """The first day whose raw clicks are all still stored (None: nothing was ever purged)."""
    return session.scalar(select(RollupState.purged_before).where(RollupState.id == STATE_ID))


@dataclass(frozen=True)
class Rebuild:
    """A rebuild under way: clicks with ids up to ``last_id`` are counted again from ``since``."""

    token: str
    since: date | None  # None: every day
    last_id: int  # clicks stored after the rebuild began were added by the ingester


def start_rebuild(session: Session, *, now: datetime) -> Rebuild:
    """Take the lease, note the last click stored, and delete the rollups to be recomputed.

    Clicks up to ``last_id`` are then counted again in chunks (``rebuild_chunk``); the ingester
    adds later ones itself. That split is exact only if no click transaction is in flight
    while this one reads the last id and deletes: on SQLite this transaction already holds the
    one write lock; on PostgreSQL it waits for clicks writers to finish and holds new ones off
    until the caller commits.
    """
    token = take_lease(session, now=now)
    if session.connection().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE clicks IN SHARE MODE"))
    since = purged_before(session)
    last_id = session.scalar(select(func.max(Click.id))) or 0
    stale = delete(ClickRollup)
    session.execute(stale.where(ClickRollup.day >= since) if since else stale)
    return Rebuild(token, since, last_id)


def rebuild_chunk(session: Session, job: Rebuild, after_id: int, *, now: datetime) -> tuple[int, int]:
    """Count the next chunk of clicks after ``after_id``; return (the last id read, clicks read), (x, 0) when done."""
    renew_lease(session, job.token, now=now)
    stmt = select(*CLICK_FIELDS).where(Click.id > after_id, Click.id <= job.last_id).order_by(Click.id)
    rows = session.execute(stmt.limit(REBUILD_CHUNK)).all()
    if not rows:
        return job.last_id, 0
    clicks = [row._mapping for row in rows]
    if job.since:
        start = day_start(job.since)
        clicks = [click for click in clicks if click["clicked_at"] >= start]
    add(session, aggregate(clicks))
    return rows[-1].id, len(rows)


def finish_rebuild(session: Session, job: Rebuild) -> None:
    release_lease(session, job.token)


def recompute(session: Session, since: date | None = None, chunk: int = REBUILD_CHUNK) -> dict[Key, list[int]]:
    """The rollups of days from ``since`` as raw clicks give them now, read in chunks."""
    totals: dict[Key, list[int]] = {}
    after = 0
    start = day_start(since) if since else None
    while True:
        stmt = select(*CLICK_FIELDS).where(Click.id > after).order_by(Click.id).limit(chunk)
        rows = session.execute(stmt).all()
        if not rows:
            return totals
        aggregate((row._mapping for row in rows if start is None or row.clicked_at >= start), totals)
        after = rows[-1].id


def stored(session: Session, since: date | None = None) -> dict[Key, list[int]]:
    """The rollups as stored, for days from ``since``."""
    stmt = select(ClickRollup)
    if since:
        stmt = stmt.where(ClickRollup.day >= since)
    return {
        (row.dimension, row.day, row.affiliate_id, row.program_id, row.value): [
            row.raw_clicks,
            row.human_clicks,
            row.unique_clicks,
        ]
        for row in session.scalars(stmt)
    }


def differences(session: Session) -> list[tuple[Key, list[int] | None, list[int] | None]]:
    """Rollups that disagree with raw clicks (days before a purge are not compared): (key, stored, recomputed)."""
    since = purged_before(session)
    have, want = stored(session, since), recompute(session, since)
    keys = sorted(have.keys() | want.keys())
    return [(key, have.get(key), want.get(key)) for key in keys if have.get(key) != want.get(key)]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def utc_day(session: Session, column: ColumnElement) -> ColumnElement:
    """The UTC calendar day of a timestamp column, in SQL (a string on SQLite, a date on PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite keeps the UTC wall time as text, which date() reads


def as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _conversion_recount(session: Session):
    """What conversion_rollups should hold, as a query: attributed conversions, a refund under its sale's status."""
    sale = aliased(Conversion)
    keys = (
        utc_day(session, Conversion.occurred_at),
        Conversion.affiliate_id,
        Conversion.program_id,
        Conversion.type,
        func.coalesce(sale.status, Conversion.status),
        Conversion.currency,
    )
    return (
        select(*keys, func.count(), func.sum(Conversion.amount_cents))
        .select_from(Conversion)
        .outerjoin(sale, sale.id == Conversion.refund_of_id)
        .where(Conversion.affiliate_id.is_not(None))
        .group_by(*keys)
    )


def _commission_recount(session: Session):
    """What commission_rollups should hold, as a query: commissions on their conversion's day."""
    own = func.coalesce(Commission.affiliate_id == Conversion.affiliate_id, False)
    keys = (
        utc_day(session, Conversion.occurred_at),
        Commission.affiliate_id,
        Commission.program_id,
        Commission.status,
        Commission.currency,
        own,
    )
    return (
        select(*keys, func.sum(Commission.amount_cents))
        .select_from(Commission)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .group_by(*keys)
    )


def rebuild_money(session: Session) -> None:
    """Recompute the conversion and commission rollups from their tables, holding off their writers meanwhile."""
    if session.connection().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE conversions, commissions IN SHARE MODE"))
    session.execute(delete(ConversionRollup))
    session.execute(delete(CommissionRollup))
    session.execute(
        insert(ConversionRollup).from_select(
            ["day", "affiliate_id", "program_id", "kind", "status", "currency", "conversion_count", "amount_cents"],
            _conversion_recount(session),
        )
    )
    session.execute(
        insert(CommissionRollup).from_select(
            ["day", "affiliate_id", "program_id", "status", "currency", "own", "amount_cents"],
            _commission_recount(session),
        )
    )


def money_differences(session: Session) -> list[tuple[str, tuple, tuple | None, tuple | None]]:
    """Conversion and commission rollups that disagree with their tables: (table, key, stored, recomputed).

    A row whose counts are all zero (everything in it was taken out again) counts as absent.
    """
    conversion_columns = (
        ConversionRollup.day,
        ConversionRollup.affiliate_id,
        ConversionRollup.program_id,
        ConversionRollup.kind,
        ConversionRollup.status,
        ConversionRollup.currency,
        ConversionRollup.conversion_count,
        ConversionRollup.amount_cents,
    )
    commission_columns = (
        CommissionRollup.day,
        CommissionRollup.affiliate_id,
        CommissionRollup.program_id,
        CommissionRollup.status,
        CommissionRollup.currency,
        CommissionRollup.own,
        CommissionRollup.amount_cents,
    )
    found = []
    for table, stored_query, recount_query in (
        ("conversion_rollups", select(*conversion_columns), _conversion_recount(session)),
        ("commission_rollups", select(*commission_columns), _commission_recount(session)),
    ):
        own = table == "commission_rollups"
        have, want = (_by_key(session.execute(query), own=own) for query in (stored_query, recount_query))
        for key in sorted(have.keys() | want.keys(), key=repr):
            if have.get(key) != want.get(key):
                found.append((table, key, have.get(key), want.get(key)))
    return found


def _by_key(rows, *, own: bool) -> dict[tuple, tuple[int, ...]]:
    """Rows (six key columns, then counts) as {key: counts}, keys alike on every database: days as dates, own a bool."""
    keyed = {}
    for row in rows:
        day, *rest = row[:6]
        if own:
            rest[-1] = bool(rest[-1])
        counts = tuple(int(value) for value in row[6:])
        if any(counts):
            keyed[(as_date(day), *rest)] = counts
    return keyed
