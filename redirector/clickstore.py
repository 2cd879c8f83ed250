"""The database side of clicks: logged clicks judged and stored in batches, with their rollups.

Runs where clicks are ingested: in the ingester process (redirector/ingester.py) or, with
``CLICK_INGESTER=thread``, in each request process's ingester thread (redirector/recorder.py).
Each batch is enriched (device and geo), marked unique or not, scored against its program's
fraud rules and inserted with its rollups in one transaction per lane (on PostgreSQL a batch is
split by affiliate into INGEST_LANES lanes, stored side by side; see ClickStore.insert). A database
that refuses a batch leaves it in the click log, offered again every RETRY_SECONDS. Once a batch is
stored, the conversions that waited for any of its clicks are attributed, in a transaction of their own
(services/late_clicks.py).

Why one module: a batch's steps (its stored history looked up, uniqueness, fraud verdicts, the insert and the
rollups) share one transaction and one turn among ingesters per lane, and each reads what the step before it
decided.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

import orjson
import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import Click
from affiliate.services import late_clicks, partitions, rollups
from affiliate.services.fraud import (
    DEFAULT_RULES,
    Action,
    ClickSignals,
    NavigationHistory,
    Observed,
    RuleSetting,
    Verdict,
    reports_user_activation,
    score_click,
    settings_for,
)
from affiliate.urls import url_host
from redirector import enrich
from redirector.clickrecord import INGEST_LANES, INGEST_TURN_KEY, ClickRecord

log = logging.getLogger(__name__)

COLUMNS = tuple(column.name for column in Click.__table__.columns if column.name != "id")
_COLUMN_VALUES = itemgetter(*COLUMNS)  # a click's values in COLUMNS order, in one call
_AT = COLUMNS.index("clicked_at")
MINUTE = timedelta(minutes=1)
RULES_SECONDS = 30.0
OFFER_CHUNK = 2000  # records of the rejected file stored at a time
RETRY_SECONDS = 2.0  # how long refused clicks wait in the click log before the database is asked again


JUDGED_COLUMNS = ("visitor_id", "fingerprint", "ip")  # a click's history is looked up by each, on its link


def _counts(hour: str, minute: str) -> str:
    """A judging lookup's answer for one (link, value) pair: its latest stored click, and how many stored clicks
    came since the marks ``hour`` and ``minute`` (parameter marks of the database's driver)."""
    return (
        f"MAX(c.clicked_at) AS at, SUM(CASE WHEN c.clicked_at >= {hour} THEN 1 ELSE 0 END) AS hour,"
        f" SUM(CASE WHEN c.clicked_at >= {minute} THEN 1 ELSE 0 END) AS minute"
    )


def _recent_postgresql() -> str:
    """ClickStore._recent's statement on PostgreSQL: the batch's (link, visitor, device, address) rows, each with
    its latest stored click and its counts for the three columns, only where one of them has stored clicks."""
    counts = _counts("%(hour)s", "%(minute)s")
    lookups = "".join(
        f" LEFT JOIN LATERAL (SELECT {counts}"  # noqa: S608 - see below
        f" FROM clicks c WHERE c.link_id = b.link AND c.{column} = b.v{n}"
        f" AND c.clicked_at >= %(since)s AND c.clicked_at <= %(until)s HAVING COUNT(*) > 0) AS r{n} ON true"
        for n, column in enumerate(JUDGED_COLUMNS)
    )
    numbers = range(len(JUDGED_COLUMNS))
    answers = ", ".join(f"b.v{n}, r{n}.at, r{n}.hour, r{n}.minute" for n in numbers)
    values = ", ".join(f"v{n} text" for n in numbers)
    found = " OR ".join(f"r{n}.at IS NOT NULL" for n in numbers)
    # The SQL text holds our own column names and parameter marks only; every value goes as a bound parameter.
    return (
        f"SELECT b.link, {answers} FROM json_to_recordset(%(batch)s::json) AS b(link bigint, {values})"  # noqa: S608
        f"{lookups} WHERE {found}"
    )


RECENT_POSTGRESQL = _recent_postgresql()


def attempt_ingest(ingest: Callable[[], int], *, database_ok: bool) -> int | None:
    """Run one ingest pass; None when the database refused it (its clicks stay in the click log).

    ``database_ok``: whether the last pass went through. The first refusal and the first pass
    taken after refusals are logged, not every retry in between.
    """
    try:
        moved = ingest()
    except Exception:
        if database_ok:
            log.warning("database refused logged clicks; they stay in the click log", exc_info=True)
        return None
    if not database_ok:
        log.warning("database is taking clicks again")
    return moved


class ClickStore:
    """Raw, batched SQL for the hot path: a few grouped queries and two executemanys per batch.

    ``navigations`` is the cookie-stuffing rule's history of recent navigations per link and referrer host:
    in memory, of the clicks this ClickStore judged since it was made (see NavigationHistory), one per lane.
    """

    def __init__(self, engine: Engine, unique_window: timedelta, geoip_database: str | None = None) -> None:
        """``geoip_database``: a MaxMind City file for the clicks' geo (None: the shipped GeoLite2-City)."""
        self.engine = engine
        self.unique_window = unique_window
        self.geo = enrich.GeoLookup(geoip_database)
        self.sqlite = engine.dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        columns = ", ".join(COLUMNS)
        values = ", ".join([mark] * len(COLUMNS))
        # The SQL text holds our own column names and parameter marks only; every value goes as a bound parameter.
        self.insert_sql = f"INSERT INTO clicks ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"  # noqa: S608
        self.copy_sql = f"COPY clicks ({columns}) FROM STDIN"
        self.rules = _RuleCache(mark)
        self.lanes = 1 if self.sqlite else INGEST_LANES
        # One history per lane: a link's clicks are always judged in its affiliate's lane (see insert).
        self.navigations = [NavigationHistory(NavigationHistory.MAX_SOURCES // self.lanes) for _ in range(self.lanes)]
        self._lane_pool = ThreadPoolExecutor(self.lanes - 1, "click-lane") if self.lanes > 1 else None

    def close(self) -> None:
        """Stop the lanes' threads (the engine is its owner's to dispose)."""
        if self._lane_pool is not None:
            self._lane_pool.shutdown(wait=True)

    def _time(self, value: datetime) -> datetime | str:
        # SQLite keeps UTC wall time as text, in the same form the ORM's UTCDateTime writes.
        if not self.sqlite:
            return value
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        return utc.replace(tzinfo=None).isoformat(" ", "microseconds")

    def _row(self, click: ClickRecord) -> tuple:
        row = _COLUMN_VALUES(click)
        if not self.sqlite:
            return row
        return (*row[:_AT], self._time(row[_AT]), *row[_AT + 1 :])

    def insert(self, clicks: list[ClickRecord]) -> None:
        """Insert clicks and add them to the rollups, skipping any already stored (a log replayed after a crash).

        On PostgreSQL the batch is split into lanes by affiliate, stored side by side, each in a transaction of
        its own: while one lane's statements run in the database, another's clicks are judged in Python, so a
        batch takes the longer of the two rather than their sum. Everything a click is judged against (its
        link's stored clicks and navigations) and every rollup row it adds to belong to its affiliate, so lanes
        never wait for each other. A lane that fails leaves the whole segment in the click log; offered again,
        the lanes that went through find their clicks stored and skip them.
        """
        if not clicks:
            return
        for click in clicks:
            enrich.add_device_and_geo(click, self.geo)  # before the write transaction: a parse may take a millisecond
        if self.lanes == 1:
            self._insert_lane(0, clicks)
            return
        lanes: list[list[ClickRecord]] = [[] for _ in range(self.lanes)]
        for click in clicks:
            lanes[click["affiliate_id"] % self.lanes].append(click)
        busy = [(lane, part) for lane, part in enumerate(lanes) if part]
        others = [self._lane_pool.submit(self._insert_lane, lane, part) for lane, part in busy[1:]]
        failure = None
        try:
            self._insert_lane(*busy[0])
        except BaseException as error:
            failure = error
        for other in others:
            try:
                other.result()
            except BaseException as error:
                failure = failure or error
        if failure is not None:
            raise failure

    def _insert_lane(self, lane: int, clicks: list[ClickRecord]) -> None:
        """Store one lane's clicks and their rollups in one transaction.

        The rollups are updated in the same transaction as the clicks, so they agree even after
        a crash. A replayed click must not be counted twice, so the batch's click ids already in
        the table are found first, and only the others are judged, inserted and counted. No
        other transaction stores the same click meanwhile: a click is in one log segment, and a
        segment is stored by whoever holds its exclusive lock (redirector/clicklog.py).
        """
        observed: list[Observed] = []
        navigations = self.navigations[lane]
        try:
            with self.engine.begin() as conn:
                self._take_turn(conn, lane)
                clicks = self._unstored(conn, clicks)
                if not clicks:
                    return
                waiting = late_clicks.waiting_for(conn, (click["click_id"] for click in clicks))
                first = min(click["clicked_at"] for click in clicks)
                last = max(click["clicked_at"] for click in clicks)
                reach = max(self.unique_window, timedelta(hours=1))
                times = (
                    self._time(first - reach),
                    self._time(first - timedelta(hours=1)),
                    self._time(first - timedelta(minutes=1)),
                    self._time(last + reach),
                )
                recent = self._recent(conn, clicks, times)
                self._mark_unique(clicks, recent)
                self._judge(conn, clicks, recent, navigations, observed)
                rows = [self._row(click) for click in clicks]
                if self.sqlite:
                    conn.exec_driver_sql(self.insert_sql, rows)
                else:
                    self._copy(conn, rows)
                rollups.upsert(conn, rollups.aggregate(clicks))
        except BaseException:
            navigations.forget(observed)  # the batch stays in the click log and is judged again
            raise
        if waiting:
            self._attribute_waiting(waiting)

    def _attribute_waiting(self, conversion_ids: list[int]) -> None:
        """Attribute the conversions that waited for the clicks just stored. The clicks are stored either way:
        a failure here leaves the conversions to the money jobs' sweep."""
        try:
            with Session(self.engine) as session:
                late_clicks.attribute_arrived(session, conversion_ids, now=datetime.now(UTC))
                session.commit()
        except Exception:
            log.warning("could not attribute conversions waiting for stored clicks; the sweep will", exc_info=True)

    def _take_turn(self, conn, lane: int) -> None:
        """Wait until no other ingester is judging and storing a batch of this lane, and hold the turn until this
        one commits.

        A click is judged against the clicks stored before it (is its device's first on the link, is it
        over the flooding limit), and one device's clicks may reach several redirector nodes, each storing
        with an ingester of its own. Two transactions judging the same links at once would not see each
        other's clicks and count both as firsts. SQLite already lets one writer in at a time (BEGIN
        IMMEDIATE); on PostgreSQL a transaction-level advisory lock per lane does, released by the commit or
        rollback. The same turn lets a conversion about to wait for one of the batch's clicks in only before
        the batch looks up the waiting conversions or after it commits (affiliate.services.conversions).
        """
        if not self.sqlite:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (INGEST_TURN_KEY, lane))

    def _copy(self, conn, rows: list[tuple]) -> None:
        """PostgreSQL's bulk path: the rows through COPY, several times faster than an INSERT per click.

        COPY has no ON CONFLICT: _unstored has already left out every click stored before, and no other
        transaction stores this segment's clicks meanwhile (see insert).
        """
        with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            for row in rows:
                copy.write_row(row)

    def make_months_ahead(self, now: datetime) -> list[str]:
        """Make the clicks table's partitions for this month and the next few where it is partitioned (PostgreSQL)."""
        if self.sqlite:
            return []
        with self.engine.begin() as conn:
            return partitions.ensure_months(conn, now=now)

    def _unstored(self, conn, clicks: list[ClickRecord]) -> list[ClickRecord]:
        """The batch without clicks already in the table, nor repeats of a click id within it."""
        batch: dict[str, ClickRecord] = {}
        for click in clicks:
            batch.setdefault(click["click_id"], click)  # the first copy, as ON CONFLICT DO NOTHING would keep
        ids = list(batch)
        if self.sqlite:
            # Parameter marks only; every id is bound. A batch is at most STORE_CHUNK (2,000) ids.
            sql = f"SELECT click_id FROM clicks WHERE click_id IN ({', '.join(['?'] * len(ids))})"  # noqa: S608
            stored = conn.exec_driver_sql(sql, tuple(ids)).fetchall()
        else:
            # A stored copy has the same clicked_at (both come from the click log), so only the batch's months
            # of a partitioned table are searched.
            times = [click["clicked_at"] for click in batch.values()]
            stored = conn.exec_driver_sql(
                "SELECT click_id FROM clicks WHERE click_id = ANY(%s) AND clicked_at BETWEEN %s AND %s",
                (ids, min(times), max(times)),
            ).fetchall()
        for (click_id,) in stored:
            del batch[click_id]
        return list(batch.values())

    def _recent(self, conn, clicks: list[ClickRecord], times: tuple) -> dict[str, dict[tuple, tuple]]:
        """Per judged column, for each of the batch's (link, value) pairs with stored clicks: the latest stored
        click from ``times[0]`` to ``times[3]``, and how many stored clicks came since ``times[1]`` (an hour before
        the batch) and ``times[2]`` (a minute).

        A click stored before this batch may be later than it (another node's ingester, a log replayed after a
        crash). One within the window still counts, as the batch's click would have counted against it had the
        batch been stored first; one beyond it does not, as it would not in time order. The upper bound also
        leaves out the later months of a partitioned table, and PostgreSQL then looks each pair up in the
        index that starts with its value instead of scanning its link's clicks.

        Each pair is looked up in an index that starts with its value (visitor, device) or with its link and
        address, so that a batch reads only its own pairs' clicks. Asking for the batch's values
        and links separately would read every click of its links in the hour, which on a busy link grows with the
        link's traffic. SQLite joins the pairs to the clicks one by one anyway, one query per column; PostgreSQL is
        given the batch once, as one JSON parameter (orjson writes it in C, where psycopg builds an array parameter
        element by element in Python), and each pair as a lateral subquery, which it cannot turn into a scan of the
        month's partition: one statement, parsed and planned once, for the three columns.
        """
        if self.sqlite:
            return {column: self._recent_sqlite(conn, clicks, column, times) for column in JUDGED_COLUMNS}
        batch = {(click["link_id"], *(click[column] or None for column in JUDGED_COLUMNS)) for click in clicks}
        keys = ("link", *(f"v{n}" for n in range(len(JUDGED_COLUMNS))))
        params = {
            "batch": orjson.dumps([dict(zip(keys, row, strict=True)) for row in batch]).decode(),
            "since": times[0],
            "hour": times[1],
            "minute": times[2],
            "until": times[3],
        }
        found: dict[str, dict[tuple, tuple]] = {column: {} for column in JUDGED_COLUMNS}
        for link, *answers in conn.exec_driver_sql(RECENT_POSTGRESQL, params):
            for n, column in enumerate(JUDGED_COLUMNS):
                value, at, hour, minute = answers[4 * n : 4 * n + 4]
                if at is not None:
                    found[column][(link, value)] = (at, int(hour), int(minute))
        return found

    def _recent_sqlite(self, conn, clicks: list[ClickRecord], column: str, times: tuple) -> dict[tuple, tuple]:
        """_recent's lookups of one column on SQLite."""
        pairs = list({(click["link_id"], click[column]) for click in clicks if click[column]})
        if not pairs:
            return {}
        counts = _counts("?", "?")
        # Our own column names and parameter marks only; every value is bound. A batch is at most STORE_CHUNK (2,000)
        # clicks, so SQLite gets at most 4,004 values, far under its limit of 32,766.
        values = ", ".join(["(?, ?)"] * len(pairs))
        sql = (
            f"WITH pairs(link, value) AS (VALUES {values}) SELECT c.link_id, c.{column}, {counts}"  # noqa: S608
            f" FROM pairs JOIN clicks c ON c.link_id = pairs.link AND c.{column} = pairs.value"
            f" WHERE c.clicked_at >= ? AND c.clicked_at <= ? GROUP BY c.link_id, c.{column}"
        )
        args = (*(item for pair in pairs for item in pair), times[1], times[2], times[0], times[3])
        rows = conn.exec_driver_sql(sql, args).fetchall()
        return {(link, value): (at, int(hour), int(minute)) for link, value, at, hour, minute in rows}

    def _mark_unique(self, clicks: list[ClickRecord], recent: dict[str, dict]) -> None:
        """A click is unique unless its visitor or device clicked the same link within the window.

        The stored clicks come from ``recent``; the batch itself is then walked in order.
        """
        seen: dict[tuple, datetime] = {}
        for kind, column in (("v", "visitor_id"), ("f", "fingerprint")):
            for (link, value), (at, _, _) in recent[column].items():
                # SQLite hands back its UTC wall-time text: read once per pair, not written once per click.
                seen[(kind, link, value)] = datetime.fromisoformat(at).replace(tzinfo=UTC) if self.sqlite else at
        window = self.unique_window
        for click in clicks:
            link, at = click["link_id"], click["clicked_at"]
            horizon = at - window
            keys = (("v", link, click["visitor_id"]), ("f", link, click["fingerprint"]))
            click["is_unique"] = not any(key in seen and seen[key] >= horizon for key in keys if key[2])
            for key in keys:
                if key[2]:
                    seen[key] = at

    def _judge(
        self,
        conn,
        clicks: list[ClickRecord],
        recent: dict[str, dict],
        navigations: NavigationHistory,
        observed: list[Observed],
    ) -> None:
        """Score each click with its program's fraud rules; add what ``navigations`` counted to ``observed``.

        Flooding counts are of stored clicks in the hour (and minute) before the batch's first
        click, plus the batch's own earlier clicks: bounded, indexed windows, never the whole history.
        Navigation evidence comes from ``navigations``, which every judged click then joins, in order.
        A batch judges each program's clicks by one reading of its rules, and most of its clicks alike (no
        rule fired, or the same ones on the same evidence): each distinct verdict is worked out once.
        """
        rules: dict[int, dict[str, RuleSetting]] = {}
        verdicts: dict[tuple[int, ClickSignals], Verdict] = {}
        stored = {
            (kind, link, value): [minute, hour]
            for kind, column in (("ip", "ip"), ("device", "fingerprint"))
            for (link, value), (_, hour, minute) in recent[column].items()
        }
        batch: dict[tuple, list] = {}
        for click in clicks:
            counts = {}
            for kind, column in (("ip", "ip"), ("device", "fingerprint")):
                key = (kind, click["link_id"], click[column])
                if not key[2]:
                    counts[kind] = (0, 0)
                    continue
                earlier = batch.setdefault(key, [])
                base = stored.get(key, [0, 0])
                in_minute = sum(1 for at in earlier if click["clicked_at"] - at <= MINUTE)
                counts[kind] = (base[0] + in_minute, base[1] + len(earlier))
                earlier.append(click["clicked_at"])
            _site, mode, dest, user = [*(click["sec_fetch"] or "").split("/"), "", "", "", ""][:4]
            host = url_host(click["referrer"])
            earlier, unactivated = navigations.recent(click["link_id"], host, click["clicked_at"])
            signals = ClickSignals(
                bot_reason=click["bot_reason"],
                is_unique=click["is_unique"],
                sec_fetch_dest=dest or None,
                sec_fetch_mode=mode or None,
                sec_fetch_user=user or None,
                reports_user_activation=reports_user_activation(click["os"], click["browser"], click["user_agent"]),
                browser=click["browser"],
                referrer_host=host,
                source_navigations=earlier,
                source_unactivated=unactivated,
                paid_click_params=tuple(filter(None, (click["paid_click"] or "").split(","))),
                country=click["country"],
                same_ip_last_minute=counts["ip"][0],
                same_ip_last_hour=counts["ip"][1],
                same_device_last_minute=counts["device"][0],
                same_device_last_hour=counts["device"][1],
            )
            program_id = click["program_id"]
            verdict = verdicts.get((program_id, signals))
            if verdict is None:
                if program_id not in rules:
                    rules[program_id] = self.rules.for_program(conn, program_id)
                verdict = verdicts[(program_id, signals)] = score_click(signals, rules[program_id])
            counted = navigations.observe(signals, click["link_id"], click["clicked_at"])
            if counted:
                observed.append(counted)
            if click["fraud_action"] == "reject":  # decided when the click was made (an inactive affiliate)
                fired = json.loads(click["fraud_reasons"] or "[]") + json.loads(verdict.as_json())
                click["fraud_reasons"] = json.dumps(fired)
                click["fraud_score"] = 100
                continue
            click["fraud_score"] = verdict.score
            click["fraud_action"] = verdict.action.value if verdict.fired else None
            click["fraud_reasons"] = verdict.as_json() if verdict.fired else None


class _RuleCache:
    """Each program's fraud rule settings, read at most every RULES_SECONDS (a change applies to new traffic)."""

    def __init__(self, mark: str) -> None:
        self.sql = f"SELECT rule, action, weight, settings FROM fraud_rules WHERE program_id = {mark}"  # noqa: S608
        self.cached: dict[int, tuple[float, dict[str, RuleSetting]]] = {}

    def for_program(self, conn, program_id: int) -> dict[str, RuleSetting]:
        hit = self.cached.get(program_id)
        if hit is not None and time.monotonic() - hit[0] < RULES_SECONDS:
            return hit[1]
        stored = {}
        for rule, action, weight, settings in conn.exec_driver_sql(self.sql, (program_id,)):
            if rule in DEFAULT_RULES:
                stored[rule] = RuleSetting(rule, Action(action), int(weight), json.loads(settings or "{}"))
        rules = settings_for(stored)
        self.cached[program_id] = (time.monotonic(), rules)
        return rules


def decode_click(record: dict) -> ClickRecord:
    """A click as read from the click log (JSON), with every column present and ``clicked_at`` a datetime.

    Raises one of RECORD_ERRORS for a record that cannot be a click (a damaged one): ``store_records`` sets it
    aside."""
    # Every column, None unless the record has it (a record holds click columns only: a LoggedClick).
    click: ClickRecord = dict.fromkeys(COLUMNS)  # type: ignore[assignment]
    click.update(record)
    clicked_at = datetime.fromisoformat(record["clicked_at"])
    if clicked_at.utcoffset() is None:
        raise ValueError("clicked_at has no time zone")
    click["clicked_at"] = clicked_at
    return click


# What a record, not the database, is to blame for: a value the database refuses (too long, of the wrong type, a
# broken constraint; through SQLAlchemy, or from the driver itself on PostgreSQL's COPY path) or a record that is
# not a click at all. OperationalError and its kind (the database down, a lock, a missing table) leave the
# clicks in the click log to be offered again.
RECORD_ERRORS = (
    DataError,
    IntegrityError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)
REJECTED_NAME = "rejected-clicks.jsonl"
OFFERING_PATTERN = "rejected-*.offering"  # a set-aside file an offer has taken over and not finished
_LENGTHS = {column.name: column.type.length for column in Click.__table__.columns if getattr(column.type, "length", 0)}


def store_records(store: ClickStore, records: list, directory: Path) -> None:
    """Decode and store click log records, so that one record that cannot be stored never holds up the others.

    A batch the database refuses for a record's sake is stored in halves until the record is alone; that record
    is stored once more with each text cut to its column's length, and failing that is set aside in
    ``REJECTED_NAME`` beside the click log, with why, for the operator (``flask ingest-clicks --rejected``
    offers the file again once the cause is mended). Clicks stored before a failure are skipped when offered
    again, as after a crash.
    """
    clicks = []
    for record in records:
        try:
            clicks.append(decode_click(record))
        except RECORD_ERRORS as error:
            set_aside(directory, record, error)
    if clicks:
        _store_parts(store, clicks, directory)


def _store_parts(store: ClickStore, clicks: list[ClickRecord], directory: Path) -> None:
    try:
        store.insert(clicks)
        return
    except RECORD_ERRORS as error:
        failure = error
    if len(clicks) > 1:
        half = len(clicks) // 2
        _store_parts(store, clicks[:half], directory)
        _store_parts(store, clicks[half:], directory)
        return
    fitted = fit_columns(clicks[0])
    if fitted != clicks[0]:
        try:
            store.insert([fitted])
            log.warning("stored click %s with values cut to their columns' lengths", fitted.get("click_id"))
            return
        except RECORD_ERRORS as error:
            failure = error
    set_aside(directory, clicks[0], failure)


def offer_rejected(store: ClickStore, directory: Path) -> int:
    """Store the records kept in REJECTED_NAME again; return how many were offered. Those refused again are set
    aside anew.

    The file is taken over by renaming it under its lock (a record being set aside meanwhile goes into a new
    file), and the renamed copy is removed only once all its records went through; an offer the database refused
    halfway leaves it to the next offer, which skips the clicks stored already.
    """
    pending = sorted(directory.glob(OFFERING_PATTERN))
    path = directory / REJECTED_NAME
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        fd = None  # nothing set aside, or another offer took it a moment ago
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino:
                taken = directory / f"rejected-{time.time_ns()}-{os.getpid()}.offering"
                os.rename(path, taken)
                pending.append(taken)
        finally:
            os.close(fd)
    offered = 0
    for offering in pending:
        try:
            held = os.open(offering, os.O_RDONLY)
        except FileNotFoundError:
            continue  # another offer finished it
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(held)
            continue  # another offer is storing it right now
        try:
            offered += _offer(store, offering, directory)
        finally:
            os.close(held)
    return offered


def _offer(store: ClickStore, offering: Path, directory: Path) -> int:
    """Store one taken-over file of set-aside records (its lock held); remove it once every record went through."""
    if not offering.exists():
        return 0  # finished by another offer between finding it and locking it
    records, unreadable = [], []
    for line in offering.read_bytes().splitlines():
        if line.strip():
            try:
                records.append(orjson.loads(line)["record"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as error:
                unreadable.append((line.decode("utf-8", "replace"), error))
    for start in range(0, len(records), OFFER_CHUNK):
        store_records(store, records[start : start + OFFER_CHUNK], directory)
    for line, error in unreadable:
        set_aside(directory, line, error)
    offering.unlink()
    return len(records)


def fit_columns(click: ClickRecord) -> ClickRecord:
    """The click with every text cut to its column's length (SQLite stores longer ones; PostgreSQL refuses them)."""
    fitted = dict(click)
    for name, length in _LENGTHS.items():
        value = fitted.get(name)
        if isinstance(value, str) and len(value) > length:
            fitted[name] = value[:length]
    return fitted  # type: ignore[return-value]


def set_aside(directory: Path, record: object, error: BaseException) -> None:
    """Keep a record that cannot be stored, with why, in the click log directory; durable before the segment that
    held it is recycled. Appends under the file's lock, to the file that is there once the lock is held (an offer
    may have taken the one opened over meanwhile)."""
    line = orjson.dumps(
        {"record": record, "error": f"{type(error).__name__}: {error}"[:2000], "set_aside_at": datetime.now(UTC)},
        default=str,
    )
    path = directory / REJECTED_NAME
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                os.write(fd, line + b"\n")
                os.fsync(fd)
                break
        finally:
            os.close(fd)
    log.error("set aside a click log record that cannot be stored (%s); it is kept in %s", error, REJECTED_NAME)
