"""The click ingester process: stores the click log segments that request processes hand off.

With ``CLICK_INGESTER=process`` the redirector's workers only append clicks to the click log
(fdatasync'ed before each 302) and seal a segment every half second; one ingester process per click
log directory moves sealed segments into the database, judging each click on the way. A lock
file says whether one runs: a worker that finds the lock free starts one. While its clicks are
fresh it holds back whenever the workers keep the CPUs busy, so the redirects come first; once a
handed-off segment has waited MAX_LAG_SECONDS it runs as an ordinary process, ahead of the workers
(which lower their own priority by REDIRECTOR_NICE, redirector/recorder.py), so a sustained burst is
stored as fast as it is answered, the clicks waiting durably in the log meanwhile. It exits once the
worker that started it is gone and nothing is left to store; a surviving worker starts the next.

Run by hand: ``python -m redirector.ingester '{"database_uri": ..., "log_dir": ..., ...}'``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from affiliate.services import partitions
from redirector.clicklog import SEALED_PATTERN, ingest_orphans
from redirector.clickstore import RETRY_SECONDS, ClickStore, attempt_ingest, store_records
from redirector.engines import make_engine

log = logging.getLogger(__name__)

LOCK_NAME = "ingester.lock"
IDLE_SECONDS = 0.2
# How long clicks may wait in the log while the machine is busy with redirects before the ingester takes
# its full share of the CPU. A sustained burst must be stored as fast as it is answered, with under a
# second of traffic waiting, and the open segments already hold up to redirector.recorder.SEAL_SECONDS of
# it: holding back longer only moves the same work later (every segment is stored whole either way) and
# adds to what waits. Holding back at all lets a burst shorter than this pass without the ingester
# preempting anything.
MAX_LAG_SECONDS = 0.1
BUSY_SHARE = 0.75  # the CPUs count as busy while other processes use more than this share of them
LOAD_SAMPLE_SECONDS = 0.1


def claim(log_dir: str | Path) -> int | None:
    """Take the directory's ingester lock; None when an ingester (or a worker starting one) holds it."""
    fd = os.open(Path(log_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def spawn(settings: dict, lock: int) -> subprocess.Popen:
    """Start an ingester process holding ``lock`` (from claim) for ``settings``; the caller's copy is closed.

    The child inherits the locked file, so no other worker can start a second ingester meanwhile.
    """
    try:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module, settings as one JSON argument
            [
                sys.executable,
                "-m",
                "redirector.ingester",
                json.dumps({**settings, "parent": os.getpid(), "lock_fd": lock}),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(lock,),
        )
    finally:
        os.close(lock)


def serve(settings: dict) -> int:
    """Store handed-off segments until the parent is gone and none are left; 0 when another ingester runs."""
    log_dir = Path(settings["log_dir"])
    lock = settings.get("lock_fd")
    if lock is None and claim(log_dir) is None:  # run by hand: the lock is held until this process ends
        return 0  # another ingester has this directory
    # Batch scheduling before the click store is made: starting up must not preempt the workers either. No
    # nice value: once clicks wait too long the ingester needs the same share of the CPUs as each worker, or a
    # burst outruns it (an unprivileged process cannot lower its nice value again).
    priority = _Priority(log_dir)
    priority.update()
    window = timedelta(seconds=int(settings["unique_window_seconds"]))
    store = ClickStore(make_engine(settings["database_uri"], immediate=True), window, settings.get("geoip_database"))

    def store_in_turn(records: list[dict]) -> None:
        priority.wait_turn()
        store_records(store, records, log_dir)

    parent = int(settings.get("parent") or os.getppid())
    database_ok = True
    months_due = 0.0
    while True:
        priority.update()
        if time.monotonic() >= months_due:
            months_due = time.monotonic() + partitions.CHECK_SECONDS
            try:
                store.make_months_ahead(datetime.now(UTC))
            except SQLAlchemyError:
                log.exception("could not make the coming months' click partitions; the default partition holds them")
        moved = attempt_ingest(partial(ingest_orphans, log_dir, store_in_turn), database_ok=database_ok)
        database_ok = moved is not None
        if not database_ok:
            time.sleep(RETRY_SECONDS)
            continue
        if moved:
            continue
        if os.getppid() != parent and not _alive(parent):
            return 0
        time.sleep(IDLE_SECONDS)


class _Priority:
    """Batch scheduling while the log is fresh; ordinary scheduling, ahead of the niced workers, once clicks
    wait too long.

    While the log is fresh, the ingester waits for a pause when the machine is busy with other work
    (the redirect workers in a burst), looking at the CPUs every LOAD_SAMPLE_SECONDS, and as a batch
    process it does not preempt a worker when it wakes. Not idle priority (SCHED_IDLE): on CPUs the
    workers keep saturated, an idle-priority process gets no time at all, not even the moment it needs
    to notice that its clicks have waited too long, and a burst outruns it for as long as it lasts.
    """

    def __init__(
        self,
        log_dir: Path,
        load: Callable[[], float | None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        set_policy: Callable[[int], None] | None = None,
    ) -> None:
        """``load``: others' share of the CPUs since it was last asked (None: unknown); /proc/stat by default.

        ``clock`` (seconds since the epoch, compared with segments' modification times), ``sleep`` and
        ``set_policy`` (this process's scheduling policy) are the system's unless a test gives its own.
        """
        self.log_dir = log_dir
        self.urgent: bool | None = None
        self.load = load or CpuLoad().others_share
        self.clock = clock
        self.sleep = sleep
        self.set_policy = set_policy or _set_policy

    def wait_turn(self) -> None:
        """Return when the ingester may store: at once when clicks wait too long or the CPUs have room."""
        while True:
            self.update()
            share = self.load()
            if self.urgent or share is None or share <= BUSY_SHARE:
                return
            self.sleep(LOAD_SAMPLE_SECONDS)

    def update(self) -> None:
        urgent = self._oldest_wait() > MAX_LAG_SECONDS
        if urgent == self.urgent:
            return
        try:
            self.set_policy(os.SCHED_OTHER if urgent else os.SCHED_BATCH)
        except OSError:
            log.warning("could not change the click ingester's CPU priority", exc_info=True)
        self.urgent = urgent

    def _oldest_wait(self) -> float:
        """Seconds since the oldest handed-off segment was last written (0 when none waits)."""
        now = self.clock()
        oldest = now
        for path in self.log_dir.glob(SEALED_PATTERN):
            with suppress(FileNotFoundError):
                oldest = min(oldest, path.stat().st_mtime)
        return now - oldest


def _set_policy(policy: int) -> None:
    os.sched_setscheduler(0, policy, os.sched_param(0))


class CpuLoad:
    """How much of the machine's CPU time other processes used, from /proc/stat (Linux)."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.last = self._sample()

    def others_share(self) -> float | None:
        """Others' share of all CPU time since the last call (0 to 1); None where /proc/stat is missing."""
        sample = self._sample()
        last, self.last = self.last, sample
        if sample is None or last is None or sample[0] <= last[0]:
            return None
        total, idle, own = (now - before for now, before in zip(sample, last, strict=True))
        return max(0.0, min(1.0, (total - idle - own * self.ticks) / total))

    @staticmethod
    def _sample() -> tuple[int, int, float] | None:
        """(all CPU time, idle time) in clock ticks, and this process's own CPU seconds."""
        try:
            with open("/proc/stat", "rb") as stat:
                fields = [int(value) for value in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        times = os.times()
        # user nice system idle iowait irq softirq steal
        return sum(fields), fields[3] + fields[4], times.user + times.system


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s click-ingester %(levelname)s %(message)s")
    sys.exit(serve(json.loads(sys.argv[1])))
