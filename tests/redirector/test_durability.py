"""Nothing acknowledged is lost: kill -9 under load, database down or disk full.

Acknowledged means a 302 carrying a click id: the click is in the fsynced click log then,
and in the database once ingested (a survivor ingests what a killed process logged).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from affiliate.models import Click
from redirector import create_redirector
from redirector.ingester import LOAD_SAMPLE_SECONDS, MAX_LAG_SECONDS, CpuLoad, _Priority
from tests.factories import Visitor, make_link
from tests.redirector.helpers import CHROME, setup_link
from tests.redirector.load import Load
from tests.servers import ROOT, Server, children

CLICKS = 2000
STORE_DEADLINE_SECONDS = 120  # waits below end as soon as the clicks are stored; this only bounds a failing run


def stored_click_ids(database_uri: str) -> set[str]:
    engine = create_engine(database_uri)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(Click.click_id)).scalars())
    finally:
        engine.dispose()


def _codes(app, count: int = 20) -> list[str]:
    s = setup_link(app)
    return [s.link.code] + [make_link(app, s.affiliate, s.program).code for _ in range(count - 1)]


@pytest.mark.parametrize("interface", ["rsgi", "wsgi"])
@pytest.mark.parametrize("victim", ["worker", "master"])
def test_kill_minus_nine_loses_no_acknowledged_click(app, database_uri, tmp_path, victim, interface):
    codes = _codes(app)
    server = Server(database_uri, tmp_path, interface=interface)
    killed = threading.Event()

    def kill_midway(acknowledged: int) -> None:
        if acknowledged >= CLICKS // 3 and not killed.is_set():
            killed.set()
            pid = server.workers()[0] if victim == "worker" else server.process.pid
            os.kill(pid, signal.SIGKILL)

    try:
        load = Load(server.port, codes)
        load.run(CLICKS, on_progress=kill_midway)
    finally:
        server.stop()
    # What the killed processes had logged but not yet ingested is picked up by whoever runs next.
    survivor = create_redirector({**app.config, "CLICK_LOG_DIR": str(tmp_path / "clicklog")})
    # A process in its last moments may still hold its log's lock. The loop ends as soon as the log is stored;
    # the deadline only bounds a failing run, so it is what a loaded two-core machine needs, not what an idle one does.
    deadline = time.monotonic() + 60
    logged = lambda: [*(tmp_path / "clicklog").glob("clicks-*.log"), *(tmp_path / "clicklog").glob("sealed-*.log")]  # noqa: E731
    while logged() and time.monotonic() < deadline:
        survivor.recorder.ingest()
        time.sleep(0.1)
    survivor.close()
    assert killed.is_set()
    assert len(load.acknowledged) >= CLICKS // 3
    lost = load.acknowledged - stored_click_ids(database_uri)
    assert lost == set(), f"{len(lost)} acknowledged clicks lost; statuses {load.statuses}"
    assert set(load.statuses) <= {302}, load.statuses


def _ingesters(server: Server) -> list[int]:
    return [
        pid
        for worker in server.workers()
        for pid in children(worker)
        if b"redirector.ingester" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_ingester_process_stores_clicks_and_is_restarted_after_kill_minus_nine(app, database_uri, tmp_path):
    """Production mode: workers only log clicks; one ingester process stores them, and comes back if killed."""
    codes = _codes(app, 5)
    server = Server(database_uri, tmp_path, CLICK_INGESTER="process", REDIRECTOR_NICE="7")
    try:
        load = Load(server.port, codes)
        load.run(300)
        # The ingester holds back while other work keeps the CPUs busy, so on a loaded machine it may take
        # longer than the clicks' own MAX_LAG_SECONDS; the loop ends when they are stored.
        deadline = time.monotonic() + STORE_DEADLINE_SECONDS
        while load.acknowledged - stored_click_ids(database_uri) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert load.acknowledged and load.acknowledged <= stored_click_ids(database_uri), "stored by the ingester"
        first = _ingesters(server)
        assert len(first) == 1, "one ingester for the click log, however many workers"
        os.kill(first[0], signal.SIGKILL)
        more = Load(server.port, codes)
        more.run(300)
        deadline = time.monotonic() + STORE_DEADLINE_SECONDS
        while more.acknowledged - stored_click_ids(database_uri) and time.monotonic() < deadline:
            time.sleep(0.2)
        lost = more.acknowledged - stored_click_ids(database_uri)
        assert lost == set(), f"{len(lost)} clicks not stored after the ingester was killed"
        assert _ingesters(server) and _ingesters(server) != first, "a worker started another ingester"
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        for worker in server.workers():
            threads = _nice_values(worker)
            assert threads.count(ours) == 1 and threads.count(min(19, ours + 7)) == len(threads) - 1, threads
        for ingester in _ingesters(server):
            assert set(_nice_values(ingester)) == {ours}, "stored at the server's priority, above the workers'"
    finally:
        server.stop()


def _nice_values(pid: int) -> list[int]:
    """The nice value of each thread of a process: one recorder thread per worker, the request threads lower."""
    values = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values.append(int(fields[16]))
    return values


PRIORITY_PROBE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from redirector.ingester import _Priority
    priority = _Priority(Path(sys.argv[1]), clock=lambda: float(sys.argv[2]))
    priority.update()
    print(os.sched_getscheduler(0), flush=True)
    sys.stdin.read()  # the test ends the probe
""")


@pytest.mark.parametrize(("age", "policy"), [(0, os.SCHED_BATCH), (30, os.SCHED_OTHER)])
def test_ingester_gives_way_to_redirects_until_clicks_wait_too_long(tmp_path, age, policy):
    """Batch scheduling while the handed-off log is fresh; a normal share of the CPU once a segment waits too long.

    The probe is a process of its own (it changes its own scheduling policy) and reads the time the test
    gives it, so however long it takes to start on a busy machine, the segment is exactly ``age`` old.
    """
    sealed = tmp_path / "sealed-1-abcd.log"
    sealed.write_bytes(b'{"click_id":"x"}\n')
    now = time.time()
    os.utime(sealed, (now - age, now - age))
    probe = subprocess.Popen(
        [sys.executable, "-c", PRIORITY_PROBE, str(tmp_path), repr(now)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with selectors.DefaultSelector() as waiting:
            waiting.register(probe.stdout, selectors.EVENT_READ)
            assert waiting.select(timeout=120), "the probe said nothing in 120 s"
        assert int(probe.stdout.readline()) == policy
    finally:
        probe.kill()
        probe.wait()
        probe.stdin.close()
        probe.stdout.close()


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.slept < 60, "held back for a minute: it would wait for good"
        self.now += seconds
        self.slept += seconds


@pytest.mark.parametrize(("load", "waits"), [("busy", True), ("quiet", False), ("unknown", False)])
def test_ingester_waits_for_a_pause_in_a_burst_until_clicks_wait_too_long(tmp_path, load, waits):
    """While the CPUs are busy with other work, the ingester holds back, but never past MAX_LAG_SECONDS."""
    clock = FakeTime(time.time())
    sealed = tmp_path / "sealed-1-abcd.log"
    sealed.write_bytes(b'{"click_id":"x"}\n')
    aged = clock.now - MAX_LAG_SECONDS / 2  # half its time from waiting too long
    os.utime(sealed, (aged, aged))
    shares = {"busy": 0.95, "quiet": 0.2, "unknown": None}
    asked, policies = [], []
    priority = _Priority(
        tmp_path,
        load=lambda: asked.append(1) or shares[load],
        clock=clock,
        sleep=clock.sleep,
        set_policy=policies.append,
    )
    priority.wait_turn()
    if waits:
        # Held back until the oldest segment waited MAX_LAG_SECONDS, then given its normal share of the CPU.
        assert MAX_LAG_SECONDS / 2 - 1e-3 < clock.slept < MAX_LAG_SECONDS / 2 + LOAD_SAMPLE_SECONDS + 1e-3
        assert len(asked) == round(clock.slept / LOAD_SAMPLE_SECONDS) + 1, "the load is read before each pause"
        assert policies == [os.SCHED_BATCH, os.SCHED_OTHER]
    else:
        assert clock.slept == 0 and len(asked) == 1 and policies == [os.SCHED_BATCH]


def test_cpu_load_counts_other_processes():
    load = CpuLoad()
    burner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass"]
    )
    burner.wait(timeout=30)
    share = load.others_share()
    assert share is not None and share >= 0.5 / os.cpu_count(), f"one busy process of {os.cpu_count()} CPUs: {share}"


def test_database_unavailable_clicks_wait_in_the_log_then_arrive(app, database_uri):
    s = setup_link(app)
    red = create_redirector(app.config)
    answers: list[int] = []
    try:
        assert Visitor(red).get(f"/r/{s.link.code}").status_code == 302  # warm: link cached, log reserved
        assert red.recorder.flush()
        with _database_refusing_writes(database_uri):
            threads = [
                threading.Thread(
                    target=lambda n=n: answers.append(
                        Visitor(red, f"198.51.100.{n}")
                        .get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
                        .status_code
                    )
                )
                for n in range(20)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert answers == [302] * 20, "shoppers are redirected while the database is down"
            assert red.recorder.ingest() == 0 and red.recorder.log.pending, "the clicks wait in the click log"
            assert len(stored_click_ids(database_uri)) == 1
        assert red.recorder.flush(timeout=STORE_DEADLINE_SECONDS), "and arrive once the database is back"
    finally:
        red.close()
    assert len(stored_click_ids(database_uri)) == 21


class _database_refusing_writes:
    """Hold the clicks table's write lock from another connection, longer than the writer waits."""

    def __init__(self, database_uri: str) -> None:
        self.uri = database_uri

    def __enter__(self):
        url = make_url(self.uri)
        if url.get_backend_name() == "sqlite":
            self.conn = sqlite3.connect(url.database, isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")
        else:
            self.engine = create_engine(self.uri)
            self.conn = self.engine.connect()
            self.transaction = self.conn.begin()
            self.conn.execute(text("LOCK TABLE clicks IN EXCLUSIVE MODE"))  # writes wait, reads go on
        return self

    def __exit__(self, *exc) -> None:
        if isinstance(self.conn, sqlite3.Connection):
            self.conn.execute("ROLLBACK")
            self.conn.close()
        else:
            self.transaction.rollback()
            self.conn.close()
            self.engine.dispose()


DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import json, resource, sqlite3, sys, threading, time
    from werkzeug.test import Client
    from config import DevelopmentConfig
    from redirector import create_redirector

    db_path, code, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = DevelopmentConfig.as_dict()
    red = create_redirector(config)
    client = Client(red)
    assert client.get("/r/" + code).status_code == 302  # reserves the click log while the disk has room
    assert red.recorder.flush()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # No file of this process may now be written past 48 kB: the database's write-ahead log is full
    # after a batch or two, and each click log segment holds about a hundred clicks.
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, hard))
    statuses, handed_out, lock = [], [], threading.Lock()
    def click(n):
        response = Client(red).get("/r/" + code, environ_base={"REMOTE_ADDR": f"198.51.100.{n % 250}"})
        with lock:
            statuses.append(response.status_code)
            if "ct_click=" in response.headers["Location"]:
                handed_out.append(response.headers["Location"].split("ct_click=")[1])
    threads = [threading.Thread(target=click, args=(n,)) for n in range(total)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    red.recorder.ingest()
    refused = not red.recorder.database_ok and red.recorder.log.pending > 0
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # the disk has room again
    drained = red.recorder.flush(timeout=60)  # returns as soon as the log is stored; a bound for a loaded machine
    red.close()
    print(json.dumps({"statuses": statuses, "refused": refused, "drained": drained, "handed_out": handed_out}))
    """
)


def test_disk_full_still_redirects_and_loses_nothing(app, database_uri, tmp_path):
    if make_url(database_uri).get_backend_name() != "sqlite":
        pytest.skip("disk full is simulated on the embedded SQLite database")
    s = setup_link(app)
    env = {
        **os.environ,
        "CLICKTRAIL_INSTANCE": str(tmp_path),
        "DATABASE_URL": database_uri,
        "SECRET_KEY": "disk-full-test",
        "PYTHONPATH": str(ROOT),
        # Under the script's file-size limit a segment holds about a hundred clicks; in production one holds
        # thousands. Batches stay smaller than a segment here as they are there, however many clicks pile up
        # behind a slow sync on a busy machine.
        "CLICK_BATCH_MAX": "32",
    }
    total = 200
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL_SCRIPT, make_url(database_uri).database, s.link.code, str(total)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [302] * total, "every shopper is redirected"
    assert report["refused"], "the database really was full"
    assert report["drained"], "the click log drained into the database once the disk had room"
    assert len(report["handed_out"]) == total, "every click was acknowledged with its click id"
    assert set(report["handed_out"]) <= stored_click_ids(database_uri), "and every acknowledged click is stored"


def test_click_log_of_a_dead_process_is_ingested_by_another(tmp_path):
    from redirector.clicklog import ClickLog

    records = [{"click_id": f"c{n}"} for n in range(5)]
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import os
            from redirector.clicklog import ClickLog
            click_log = ClickLog({str(tmp_path)!r}, 1 << 20)
            click_log.open()
            click_log.append({records!r})
            os._exit(0)  # dies without cleaning up, as kill -9 would
        """),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert writer.returncode == 0, writer.stderr
    survivor = ClickLog(str(tmp_path), 1 << 20)
    survivor.open()
    seen: list[dict] = []
    assert survivor.ingest(seen.extend) == 5
    assert seen == records
    assert len(list(Path(tmp_path).glob("*.log"))) == 1, "the dead process's segment was removed"
