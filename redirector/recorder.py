"""Clicks are made durable in the click log before their redirect is answered, then ingested.

Request threads queue their click; the first one finds no append in progress and becomes
the leader: it writes everything queued (its own click included) to the click log with
one fdatasync, wakes those waiting, and hands the lead to the next waiter if more clicks
queued meanwhile. Many concurrent clicks so share one sync, with no thread hand-off.

An ingester moves the log into the database in large batches, computing each click's
unique flag and fraud verdict on the way, so the shopper never waits for index updates and
a database that is down or full only makes the log longer until it is back. The ingester is
a thread of each process (``CLICK_INGESTER=thread``), or one process of its own per click log
directory (``process``, see redirector/ingester.py), which keeps that work off the workers. On SQLite the
processes of one server take turns through a file lock, which wakes the next writer the
moment the last one is done (SQLite's own busy handler sleeps and retries, and lets one
process starve another).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.engine import Engine

from affiliate.models import Click
from affiliate.services import rollups
from affiliate.services.fraud import (
    DEFAULT_RULES,
    Action,
    ClickSignals,
    NavigationHistory,
    Observed,
    RuleSetting,
    reports_user_activation,
    score_click,
    settings_for,
)
from affiliate.urls import url_host
from redirector import enrich
from redirector.clicklog import ClickLog
from redirector.datasync import AioSync, ThreadSync, open_data_sync

log = logging.getLogger(__name__)

COLUMNS = tuple(column.name for column in Click.__table__.columns if column.name != "id")
INGEST_INTERVAL_SECONDS = 0.05
SEAL_SECONDS = 1.0  # process mode: how long a click may wait in a worker's open segment
SUPERVISE_SECONDS = 2.0  # process mode: how often a worker checks that an ingester runs
RULES_SECONDS = 30.0
RETRY_SECONDS = 2.0
# Group commit on an event loop, as PostgreSQL's commit_delay and commit_siblings: when a sync finishes
# and fewer than GROUP_MIN clicks wait, they wait up to GROUP_WAIT_SECONDS for company, so the kernel
# makes fewer, larger syncs (each a write and a disk cache flush, on another core). 32 shoppers at once
# on two workers, seven alternating 8 s runs each: 10.0-12.8k redirects a second without the wait,
# 11.1-13.7k with it.
GROUP_MIN = 8
GROUP_WAIT_SECONDS = 0.0005


class _Ticket:
    __slots__ = ("click", "done", "lead", "stored")

    def __init__(self, click: dict) -> None:
        self.click = click
        self.done = threading.Event()
        self.lead = False
        self.stored = False


class ClickRecorder:
    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        click_log: ClickLog,
        *,
        unique_window: timedelta,
        geoip_database: str | None = None,
        batch_max: int = 256,
        wait_seconds: float = 10.0,
        ingester_process: dict | None = None,
    ) -> None:
        """``ingester_process``: settings for an ingester process (process mode); None ingests in a thread here."""
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._store: Store | None = None
        self.log = click_log
        self.unique_window = unique_window
        self.geoip_database = geoip_database
        self.batch_max = batch_max
        self.wait_seconds = wait_seconds
        self._mutex = threading.Lock()
        self._pending: list[_Ticket] = []
        self._busy = False
        self._started = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._ingester: threading.Thread | None = None
        self._ingest_lock = threading.Lock()
        self.database_ok = True
        self._loop_queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        self.appender: ThreadPoolExecutor | None = None
        self.ingester_settings = ingester_process
        self._ingester_process: subprocess.Popen | None = None

    def record(self, click: dict) -> bool:
        """Make one click durable; return True once it is in the click log."""
        if not self._started:
            self.start()
        ticket = _Ticket(click)
        with self._mutex:
            self._pending.append(ticket)
            lead = not self._busy
            self._busy = True
        if not lead:
            if not ticket.done.wait(self.wait_seconds):
                log.error("click %s not confirmed within %s s", click.get("click_id"), self.wait_seconds)
                return False
            if not ticket.lead:
                return ticket.stored
        self._lead()
        return ticket.stored

    def _lead(self) -> None:
        """Append one batch, then pass the lead on (or put it down when nothing waits)."""
        with self._mutex:
            batch = self._pending[: self.batch_max]
            del self._pending[: len(batch)]
        stored = False
        try:
            self.log.append([ticket.click for ticket in batch])
            stored = True
        except Exception:
            log.exception("could not write %d clicks to the click log", len(batch))
        finally:
            for ticket in batch:
                ticket.stored = stored
                ticket.done.set()
            with self._mutex:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False
        self._wake.set()

    async def record_async(self, click: dict) -> bool:
        """Make one click durable without holding a thread; True once it is in the click log.

        For an event loop (the RSGI front door): clicks queue on the loop, which writes the
        queue to the click log and has it fdatasync'ed (see _LoopQueue) while it goes on
        answering. When that sync is done, whatever queued meanwhile goes next, as one batch.
        """
        if not self._started:
            self.start()
        loop = asyncio.get_running_loop()
        queue = self._loop_queues.get(loop)
        if queue is None:
            for old in [old for old in self._loop_queues if old.is_closed()]:
                self._loop_queues.pop(old).close()
            queue = self._loop_queues[loop] = _LoopQueue(loop, self)
        return await queue.put(click)

    def open_data_sync(self, loop: asyncio.AbstractEventLoop) -> AioSync | ThreadSync:
        """How a loop has its click log writes synced: Linux AIO where there is, else the appender thread."""
        return open_data_sync(loop, self.appender)

    def start(self) -> None:
        """Open the click log and start the sealer (and ingester) or ingester thread; harmless to call again."""
        with self._mutex:
            if self._started:
                return
            self.log.open()
            loop, name = (
                (self._seal_loop, "click-sealer") if self.ingester_settings else (self._ingest_loop, "click-ingester")
            )
            self._ingester = threading.Thread(target=loop, name=name, daemon=True)
            self._ingester.start()
            self.appender = ThreadPoolExecutor(1, thread_name_prefix="click-appender")
            self._started = True

    def flush(self, timeout: float = 10.0) -> bool:
        """Ingest everything logged so far; return True when the log is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ingest()
            if not self.log.pending:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Ingest what is logged (if the database takes it), stop, and close connections; call it once the
        event loops that recorded clicks have stopped."""
        self._stopping.set()
        self._wake.set()
        if self._ingester is not None:
            self._ingester.join(timeout=self.wait_seconds)
        for queue in self._loop_queues.values():
            queue.close()
        self._loop_queues.clear()
        if self.appender is not None:
            self.appender.shutdown(wait=True)
        if self._ingester_process is not None:
            # What it was storing stays in its segment, to be stored again below (click ids make that harmless).
            self._ingester_process.terminate()
            self._ingester_process.wait(timeout=self.wait_seconds)
        if self._started:
            self.ingest()
        self.log.close()
        if self._engine is not None:
            self._engine.dispose()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._engine = self._engine_factory()
            self._store = Store(self._engine, self.unique_window, self.geoip_database)
        return self._store

    def _ingest_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(INGEST_INTERVAL_SECONDS if self.database_ok else RETRY_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            # Let a few more clicks join the batch: bigger batches share index work.
            time.sleep(INGEST_INTERVAL_SECONDS)
            self.ingest()

    def _seal_loop(self) -> None:
        """Process mode: hand the open segment to the ingester every SEAL_SECONDS, and keep one running."""
        self._supervise()  # at once: the first clicks should not wait for an ingester to be started
        supervised = time.monotonic()
        try:
            self.log.prepare_spare()  # the first seal then needs no new segment (written under the log's lock)
        except OSError:
            log.warning("could not prepare a click log segment", exc_info=True)
        while not self._stopping.wait(SEAL_SECONDS):
            try:
                self.log.seal()
                self.log.prepare_spare()
            except OSError:
                log.warning("could not seal the click log segment", exc_info=True)
            if time.monotonic() - supervised >= SUPERVISE_SECONDS:
                supervised = time.monotonic()
                self._supervise()

    def _supervise(self) -> None:
        from redirector import ingester  # run as `python -m redirector.ingester`: not imported with the package

        if self._ingester_process is not None and self._ingester_process.poll() is not None:
            self._ingester_process = None  # reaped
        try:
            lock = ingester.claim(self.log.directory) if self._ingester_process is None else None
            if lock is not None:
                self._ingester_process = ingester.spawn(self.ingester_settings, lock)
        except OSError:
            log.warning("could not start the click ingester process", exc_info=True)

    def ingest(self) -> int:
        """Move logged clicks into the database; return how many moved."""
        with self._ingest_lock:
            self.log.seal()
            try:
                moved = self.log.ingest(self._store_records)
            except Exception:
                if self.database_ok:
                    log.warning("database refused logged clicks; they stay in the click log", exc_info=True)
                self.database_ok = False
                return 0
            if not self.database_ok:
                log.warning("database is taking clicks again")
            self.database_ok = True
            return moved

    def _store_records(self, records: list[dict]) -> None:
        clicks = [decode_click(record) for record in records]
        self.store.insert(clicks)


class _LoopQueue:
    """Clicks waiting on one event loop for their append; touched only from that loop's thread.

    A batch is written to the click log on the loop (a copy into the page cache) and synced by
    ``datasync`` (Linux AIO, else a thread) while the loop goes on; clicks arriving meanwhile
    form the next batch.

    A disk that hangs must not hold shoppers: once a sync has run past the recorder's wait,
    its clicks and every click queued behind it are answered as not stored (the shopper lands
    without a click id), and still written when the disk comes back.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, recorder: ClickRecorder) -> None:
        self.loop = loop
        self.recorder = recorder
        self.datasync = recorder.open_data_sync(loop)
        self.waiting: list[tuple[dict, asyncio.Future]] = []
        self.appending = False
        self.stalled = False
        self.gathering: asyncio.TimerHandle | None = None  # a small batch waiting for company

    def put(self, click: dict) -> asyncio.Future:
        future = self.loop.create_future()
        self.waiting.append((click, future))
        if self.stalled:
            future.set_result(False)
        elif not self.appending:
            self._append_next()
        elif self.gathering is not None and len(self.waiting) >= GROUP_MIN:
            self.gathering.cancel()
            self._append_next()
        return future

    def _append_next(self) -> None:
        self.gathering = None
        recorder = self.recorder
        batch, self.waiting = self.waiting[: recorder.batch_max], self.waiting[recorder.batch_max :]
        self.appending = True
        timer = self.loop.call_later(recorder.wait_seconds, self._stall, batch)
        try:
            fd = recorder.log.write([click for click, _ in batch])
        except Exception as error:
            self._appended(error, batch, timer)
            return
        done = partial(self._synced, fd, batch, timer)
        try:
            self.datasync.submit(fd, done)
        except OSError:
            log.warning("the kernel refused an AIO fdatasync; the click log is synced in a thread now", exc_info=True)
            self.datasync.close()
            self.datasync = ThreadSync(self.loop, recorder.appender)
            self.datasync.submit(fd, done)

    def _synced(self, fd: int, batch: list, timer: asyncio.TimerHandle, error: OSError | None) -> None:
        os.close(fd)
        if error is None and self.recorder.ingester_settings is None:
            self.recorder._wake.set()  # this process's ingester thread
        self._appended(error, batch, timer)

    def _stall(self, batch: list) -> None:
        log.error("the click log has not confirmed an append within %s s", self.recorder.wait_seconds)
        self.stalled = True
        self._settle(batch, False)
        self._settle(self.waiting, False)

    def _appended(self, error: BaseException | None, batch: list, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        if error is not None:
            log.error("could not write %d clicks to the click log", len(batch), exc_info=error)
        self._settle(batch, error is None)
        self.appending = self.stalled = False
        if len(self.waiting) >= GROUP_MIN:
            self._append_next()
        elif self.waiting:
            self.appending = True  # those arriving meanwhile join the batch
            self.gathering = self.loop.call_later(GROUP_WAIT_SECONDS, self._append_next)

    @staticmethod
    def _settle(batch: list, stored: bool) -> None:
        for _, future in batch:
            if not future.done():
                future.set_result(stored)

    def close(self) -> None:
        self.datasync.close()


class Store:
    """Raw, batched SQL for the hot path: a few grouped queries and two executemanys per batch.

    ``navigations`` is the cookie-stuffing rule's history of recent navigations per link and referrer host:
    in memory, of the clicks this Store judged since it was made (see NavigationHistory).
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
        # Fixed column names and placeholders only; every value is bound.
        self.insert_sql = f"INSERT INTO clicks ({columns}) VALUES ({values}) ON CONFLICT (click_id) DO NOTHING"  # noqa: S608
        self.mark = mark
        self.rules = _RuleCache(mark)
        self.navigations = NavigationHistory()

    def _time(self, value: datetime) -> datetime | str:
        # SQLite keeps UTC wall time as text, in the same form the ORM's UTCDateTime writes.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds") if self.sqlite else value

    def insert(self, clicks: list[dict]) -> None:
        """Insert clicks and add them to the rollups, skipping any already stored (a log replayed after a crash).

        The rollups are updated in the same transaction as the clicks, so they agree even after
        a crash. A replayed click must not be counted twice, so the batch's click ids already in
        the table are found first, and only the others are judged, inserted and counted. No
        other transaction stores the same click meanwhile: a click is in one log segment, and a
        segment is stored by whoever holds its exclusive lock (redirector/clicklog.py).
        """
        if not clicks:
            return
        for click in clicks:
            enrich.complete(click, self.geo)  # before the write transaction: a parse may take a millisecond
        observed: list[Observed] = []
        try:
            with self.engine.begin() as conn:
                clicks = self._unstored(conn, clicks)
                if not clicks:
                    return
                first = min(click["clicked_at"] for click in clicks)
                times = (
                    self._time(first - max(self.unique_window, timedelta(hours=1))),
                    self._time(first - timedelta(hours=1)),
                    self._time(first - timedelta(minutes=1)),
                )
                recent = {
                    column: self._recent(conn, clicks, column, times) for column in ("visitor_id", "fingerprint", "ip")
                }
                self._mark_unique(clicks, recent)
                self._judge(conn, clicks, recent, observed)
                rows = [
                    tuple(self._time(click[name]) if name == "clicked_at" else click[name] for name in COLUMNS)
                    for click in clicks
                ]
                conn.exec_driver_sql(self.insert_sql, rows)
                rollups.upsert(conn, rollups.aggregate(clicks))
        except BaseException:
            self.navigations.forget(observed)  # the batch stays in the click log and is judged again
            raise

    def _unstored(self, conn, clicks: list[dict]) -> list[dict]:
        """The batch without clicks already in the table, nor repeats of a click id within it."""
        batch: dict[str, dict] = {}
        for click in clicks:
            batch.setdefault(click["click_id"], click)  # the first copy, as ON CONFLICT DO NOTHING would keep
        ids = list(batch)
        if self.sqlite:
            # Fixed placeholders only; every value is bound. A batch is at most STORE_CHUNK (2,000) ids.
            sql = f"SELECT click_id FROM clicks WHERE click_id IN ({', '.join(['?'] * len(ids))})"  # noqa: S608
            stored = conn.exec_driver_sql(sql, tuple(ids)).fetchall()
        else:
            stored = conn.exec_driver_sql("SELECT click_id FROM clicks WHERE click_id = ANY(%s)", (ids,)).fetchall()
        for (click_id,) in stored:
            del batch[click_id]
        return list(batch.values())

    def _recent(self, conn, clicks: list[dict], column: str, times: tuple) -> dict[tuple, tuple]:
        """For each of the batch's (link, value) pairs: the latest stored click since ``times[0]``, and how
        many stored clicks came since ``times[1]`` (an hour before the batch) and ``times[2]`` (a minute).

        One grouped query per column; grouping keeps the answer as small as the batch however
        often a visitor, device or address repeats.
        """
        values = list({click[column] for click in clicks if click[column]})
        if not values:
            return {}
        links = list({click["link_id"] for click in clicks})
        mark = self.mark
        # Fixed column names and placeholders only; every value is bound.
        sql = (
            f"SELECT link_id, {column}, MAX(clicked_at), SUM(CASE WHEN clicked_at >= {mark} THEN 1 ELSE 0 END),"  # noqa: S608
            f" SUM(CASE WHEN clicked_at >= {mark} THEN 1 ELSE 0 END) FROM clicks WHERE clicked_at >= {mark}"
            f" AND {column} IN ({', '.join([mark] * len(values))})"
            f" AND link_id IN ({', '.join([mark] * len(links))}) GROUP BY link_id, {column}"
        )
        rows = conn.exec_driver_sql(sql, (times[1], times[2], times[0], *values, *links)).fetchall()
        return {(link, value): (at, int(hour or 0), int(minute or 0)) for link, value, at, hour, minute in rows}

    def _mark_unique(self, clicks: list[dict], recent: dict[str, dict]) -> None:
        """A click is unique unless its visitor or device clicked the same link within the window.

        The stored clicks come from ``recent``; the batch itself is then walked in order.
        """
        seen: dict[tuple, datetime | str] = {}
        for kind, column in (("v", "visitor_id"), ("f", "fingerprint")):
            for (link, value), (at, _, _) in recent[column].items():
                seen[(kind, link, value)] = at
        for click in clicks:
            link, at = click["link_id"], self._time(click["clicked_at"])
            horizon = self._time(click["clicked_at"] - self.unique_window)
            keys = (("v", link, click["visitor_id"]), ("f", link, click["fingerprint"]))
            click["is_unique"] = not any(key in seen and seen[key] >= horizon for key in keys if key[2])
            for key in keys:
                if key[2]:
                    seen[key] = at

    def _judge(self, conn, clicks: list[dict], recent: dict[str, dict], observed: list[Observed]) -> None:
        """Score each click with its program's fraud rules; add what ``navigations`` counted to ``observed``.

        Flooding counts are of stored clicks in the hour (and minute) before the batch's first
        click, plus the batch's own earlier clicks: bounded, indexed windows, never the whole history.
        Navigation evidence comes from ``navigations``, which every judged click then joins, in order.
        """
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
                in_minute = sum(1 for at in earlier if click["clicked_at"] - at <= timedelta(minutes=1))
                counts[kind] = (base[0] + in_minute, base[1] + len(earlier))
                earlier.append(click["clicked_at"])
            _site, mode, dest, user = [*(click["sec_fetch"] or "").split("/"), "", "", "", ""][:4]
            host = url_host(click["referrer"])
            navigations, unactivated = self.navigations.recent(click["link_id"], host, click["clicked_at"])
            signals = ClickSignals(
                bot_reason=click["bot_reason"],
                is_unique=click["is_unique"],
                sec_fetch_dest=dest or None,
                sec_fetch_mode=mode or None,
                sec_fetch_user=user or None,
                reports_user_activation=reports_user_activation(click["os"], click["browser"], click["user_agent"]),
                browser=click["browser"],
                referrer_host=host,
                source_navigations=navigations,
                source_unactivated=unactivated,
                paid_click_params=tuple(filter(None, (click["paid_click"] or "").split(","))),
                country=click["country"],
                same_ip_last_minute=counts["ip"][0],
                same_ip_last_hour=counts["ip"][1],
                same_device_last_minute=counts["device"][0],
                same_device_last_hour=counts["device"][1],
            )
            verdict = score_click(signals, self.rules.for_program(conn, click["program_id"]))
            counted = self.navigations.observe(signals, click["link_id"], click["clicked_at"])
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


def decode_click(record: dict) -> dict:
    click = {name: record.get(name) for name in COLUMNS}
    click["clicked_at"] = datetime.fromisoformat(record["clicked_at"])
    return click
