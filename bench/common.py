"""What every benchmark shares: the databases it runs on, seeded worlds cached between runs, a settled machine, results.

Databases: ``--database sqlite|postgresql|both``. PostgreSQL is the server in BENCH_POSTGRES_URL (bench/run.py
starts its own cluster and sets it), else the bench cluster of bench/pgcluster.py, started for the run.

Seeded worlds are built once and cached, keyed by a hash of migrations/ and the seed's parameters: on SQLite a
database file under bench/.cache/ copied for each run, on PostgreSQL a template database in the bench cluster
cloned with CREATE DATABASE ... TEMPLATE. Building one may take long; later runs only copy it, and the time
either took is printed apart from the measured figures ("setup_seconds").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
DATABASES = ("sqlite", "postgresql")
# Quick runs (BENCH_QUICK=1): small worlds and short loads, to try the scripts; the figures mean nothing.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# Seeding only (BENCH_SEED_ONLY=1, as bench/run.py's first phase): build the cached worlds, measure nothing.
SEED_ONLY = os.environ.get("BENCH_SEED_ONLY", "") not in ("", "0")
SEED_FORMAT = 1  # bump to rebuild every cached world
MARKER = "CLICKTRAIL_BENCH_RUN"  # in the environment of every process a bench starts (see settle)
LOAD_THRESHOLD = float(os.environ.get("BENCH_LOAD_THRESHOLD", "0.5"))  # 1-minute load average per CPU
SETTLE_SECONDS = float(os.environ.get("BENCH_SETTLE_SECONDS", "90"))


def say(message: str) -> None:
    """Write a diagnostic line to stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quick(full: Any, small: Any) -> Any:
    """The full-size default, or the small one in a quick run."""
    return small if QUICK else full


# --- Databases ------------------------------------------------------------------------------------------------


def add_database_argument(parser) -> None:
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs, scripts)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="the database(s) to run on (default both; PostgreSQL is BENCH_POSTGRES_URL or the bench cluster)",
    )


def selected(choice: str) -> list[str]:
    return list(DATABASES) if choice == "both" else [choice]


_started_cluster = False


def server_url() -> str:
    """The PostgreSQL server's maintenance URL (database postgres), starting the bench cluster if none is given."""
    global _started_cluster
    given = os.environ.get("BENCH_POSTGRES_URL")
    if given:
        return given
    from bench import pgcluster

    if not pgcluster.running():
        pgcluster.start()
        _started_cluster = True
    return pgcluster.url()


def stop_cluster_if_started() -> None:
    """Stop the bench cluster when this process started it (bench/run.py starts and stops its own)."""
    if _started_cluster:
        from bench import pgcluster

        pgcluster.stop()


def database_url(server: str, name: str) -> str:
    """The URL of database ``name`` on the server, spelled for psycopg 3."""
    base = server.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def connect(url: str) -> Iterator[Any]:
    """A DB-API connection (sqlite3 or psycopg 3, autocommit) to a bench database URL."""
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=60)
    else:
        import psycopg

        connection = psycopg.connect(libpq(url), autocommit=True)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def transaction(connection: Any) -> Iterator[None]:
    """One transaction on a connection from connect()."""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("BEGIN")
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    else:
        with connection.transaction():
            yield


def scalar(url: str, sql: str, args: Sequence = ()) -> Any:
    with connect(url) as connection:
        if url.startswith("sqlite"):
            row = connection.execute(sql, args).fetchone()
        else:
            row = connection.execute(sql.replace("?", "%s"), args).fetchone()
    return row[0] if row else None


def bulk_insert(connection: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Write rows through the database's bulk path (COPY on PostgreSQL, executemany on SQLite); return the count.

    Values are Python values: aware datetimes in UTC, bools, ints, strings, None. The caller owns the transaction.
    """
    count = 0
    if isinstance(connection, sqlite3.Connection):
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
        chunk: list[tuple] = []
        for row in rows:
            chunk.append(tuple(sqlite_value(value) for value in row))
            if len(chunk) == 50_000:
                connection.executemany(insert, chunk)
                count += len(chunk)
                chunk = []
        connection.executemany(insert, chunk)
        return count + len(chunk)
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def sqlite_value(value: Any) -> Any:
    """A value as the models' types keep it on SQLite (UTCDateTime: the UTC wall time as text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def portal_app(config: type, overrides: dict[str, Any]):
    """The portal's app, for work timed in this process as a portal process would do it.

    With the garbage collector's thresholds that wsgi.py gives every portal process (its server's workers and
    ``flask --app wsgi`` commands): with Python's defaults, full collections over the 190k objects of a
    started app cost a payout build about 0.3 s that no portal process spends.
    """
    import gc

    import wsgi
    from affiliate import create_app

    gc.set_threshold(*wsgi.GC_THRESHOLDS)
    return create_app(config, overrides)


def bench_env(instance: Path, url: str) -> dict[str, str]:
    """The environment every server and command of a run gets."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLICK_", "GRANIAN_"))}
    env.update(
        CLICKTRAIL_ENV="development",
        CLICKTRAIL_INSTANCE=str(instance),
        DATABASE_URL=url,
        SECRET_KEY="bench-secret",  # noqa: S106 - a throwaway database
        TRUSTED_PROXY_COUNT="1",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        # The hourly retention round's first pass would purge and blur a seeded world's older clicks in the
        # background of whatever is measured: no figure here includes it.
        RETENTION_JOBS_SECONDS="0",
    )
    env.setdefault(MARKER, "1")
    env.pop("GEOIP_DATABASE", None)
    env.pop("DATABASE_REPLICA_URL", None)
    return env


def flask(env: dict[str, str], *args: str, timeout: float = 600) -> None:
    """Run a `flask --app wsgi` command on a bench database; its output goes to stderr."""
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=sys.stderr,
        stderr=sys.stderr,
        timeout=timeout,
    )


def migrate(env: dict[str, str]) -> None:
    """Bring a bench database to the newest schema, as `make run` does."""
    flask(env, "db", "upgrade")


# --- Cached worlds --------------------------------------------------------------------------------------------


def cache_key(name: str, params: dict[str, Any]) -> str:
    """A hash of the schema (every file under migrations/) and the seed's name, version and parameters."""
    digest = hashlib.sha256(json.dumps({"name": name, "format": SEED_FORMAT, **params}, sort_keys=True).encode())
    for path in sorted((ROOT / "migrations").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class SeededOnly(Exception):
    """Raised by world() in a seeding-only run once the world is cached."""


@dataclass
class World:
    """A fresh copy of a cached seeded world for one run: its URL, instance folder and what the seed noted."""

    database: str
    url: str
    instance: Path
    meta: dict[str, Any]
    setup_seconds: float
    seeded_now: bool
    _drop: str | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        return bench_env(self.instance, self.url)

    def dispose(self) -> None:
        """Drop the run's PostgreSQL copy (the SQLite copy goes with the run's folder)."""
        if self._drop:
            drop_database(self._drop)


Builder = Callable[[str, Path, dict[str, str]], dict[str, Any]]


def world(
    database: str,
    name: str,
    params: dict[str, Any],
    build: Builder,
    workdir: Path,
    *,
    max_age_days: float | None = None,
    clone: bool = True,
) -> World:
    """A fresh copy of the world ``build`` seeds, building and caching it first when no valid copy is cached.

    ``build(url, instance, env)`` gets a migrated, empty database and returns what later runs need to know
    (JSON). ``max_age_days`` rebuilds a world whose times, relative to its seeding, have grown too old.
    """
    started = time.monotonic()
    key = cache_key(name, params)
    instance = workdir / f"instance-{database}"
    instance.mkdir(parents=True, exist_ok=True)
    meta_path = CACHE / f"{name}-{database}-{key}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta is not None and max_age_days is not None:
        age = (datetime.now(UTC) - datetime.fromisoformat(meta["seeded_at"])).total_seconds() / 86400
        if age > max_age_days:
            say(f"{name} ({database}): the cached world is {age:.1f} days old (at most {max_age_days}); rebuilding it")
            meta = None
    cached = CACHE / f"{name}-{key}.db"
    template = f"bench_{name}_{key}"
    seeded = meta is None or not (cached.exists() if database == "sqlite" else database_exists(template))
    if seeded and database == "sqlite":
        meta = _build_sqlite(name, key, params, build, cached, meta_path)
    elif seeded:
        meta = _build_postgresql(name, key, params, build, template, meta_path, workdir)
    if SEED_ONLY:
        raise SeededOnly(
            f"{name} ({database}) {'seeded' if seeded else 'cached'} in {time.monotonic() - started:.0f} s"
        )
    if database == "sqlite":
        target = instance / "bench.db"
        shutil.copyfile(cached, target)
        url = f"sqlite:///{target}"
        drop = None
    elif clone:
        run_name = f"bench_run_{name}"
        drop_database(run_name)
        with connect(server_url()) as connection:
            connection.execute(f'CREATE DATABASE "{run_name}" TEMPLATE "{template}"')
        url = database_url(server_url(), run_name)
        drop = run_name
    else:
        url, drop = database_url(server_url(), template), None
    seconds = time.monotonic() - started
    say(f"{name} ({database}): {'seeded and copied' if seeded else 'copied the cached world'} in {seconds:.1f} s")
    return World(database, url, instance, meta, seconds, seeded, drop)


def _first_seed_notice(name: str, database: str, params: dict[str, Any]) -> None:
    say(
        f"{name} ({database}): no cached world for {params}; seeding one now. A first run takes long (minutes, "
        "longer for the big worlds); later runs reuse it"
    )


def _build_sqlite(name: str, key: str, params: dict, build: Builder, cached: Path, meta_path: Path) -> dict:
    _first_seed_notice(name, "sqlite", params)
    for stale in CACHE.glob(f"{name}-*.db"):
        stale.unlink()  # seeded for other migrations or sizes: space no longer used
    for stale in CACHE.glob(f"{name}-sqlite-*.json"):
        stale.unlink()
    building = CACHE / f"{name}-{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    instance = building / "instance"
    instance.mkdir(parents=True)
    database = instance / "bench.db"
    url = f"sqlite:///{database}"
    env = bench_env(instance, url)
    migrate(env)
    meta = build(url, instance, env)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    meta = {"seeded_at": datetime.now(UTC).isoformat(), **meta}
    database.rename(cached)
    shutil.rmtree(building, ignore_errors=True)
    meta_path.write_text(json.dumps(meta))
    return meta


def _build_postgresql(
    name: str, key: str, params: dict, build: Builder, template: str, meta_path: Path, workdir: Path
) -> dict:
    _first_seed_notice(name, "postgresql", params)
    with connect(server_url()) as connection:
        stale = [
            row[0]
            for row in connection.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"bench\\_{name}\\_%",)
            )
        ]
    for database in stale:
        drop_database(database)
    for path in CACHE.glob(f"{name}-postgresql-*.json"):
        path.unlink()
    building = f"{template}_building"[:63]
    drop_database(building)
    with connect(server_url()) as connection:
        connection.execute(f'CREATE DATABASE "{building}"')
    url = database_url(server_url(), building)
    instance = workdir / "instance-building"
    instance.mkdir(parents=True, exist_ok=True)
    env = bench_env(instance, url)
    migrate(env)
    meta = build(url, instance, env)
    with connect(url) as connection:
        connection.execute("VACUUM ANALYZE")
    meta = {"seeded_at": datetime.now(UTC).isoformat(), **meta}
    with connect(server_url()) as connection:
        connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
    meta_path.write_text(json.dumps(meta))
    return meta


def database_exists(name: str) -> bool:
    return bool(scalar(server_url(), "SELECT 1 FROM pg_database WHERE datname = ?", (name,)))


def drop_database(name: str) -> None:
    with connect(server_url()) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- A settled machine ----------------------------------------------------------------------------------------


def leftovers() -> list[tuple[int, str]]:
    """Processes some bench started that still run (they carry MARKER in their environment), except ourselves."""
    mine = {os.getpid(), *ancestors()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if f"{MARKER}=".encode() in environ and command:
            found.append((int(entry.name), command[:120]))
    return found


def ancestors() -> list[int]:
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def settle(label: str, *, warm_note: str = "a warm-up pass follows") -> dict[str, Any]:
    """Wait for a settled machine before a measurement and drop the page cache; return what happened.

    No process of an earlier bench may still run (waited for, then stopped by pid); the 1-minute load
    average must fall below LOAD_THRESHOLD per CPU, waited for at most SETTLE_SECONDS; the page cache is
    dropped where permitted. Every step is said on stderr.
    """
    started = time.monotonic()
    deadline = started + 30
    while (found := leftovers()) and time.monotonic() < deadline:
        time.sleep(1)
    for pid, command in leftovers():
        say(f"settle ({label}): stopping leftover bench process {pid}: {command}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 15)
    if found:
        time.sleep(2)
        for pid, _ in leftovers():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
    cpus = os.cpu_count() or 1
    limit = LOAD_THRESHOLD * cpus
    load_deadline = time.monotonic() + SETTLE_SECONDS
    load = os.getloadavg()[0]
    while load > limit and time.monotonic() < load_deadline:
        time.sleep(2)
        load = os.getloadavg()[0]
    settled = load <= limit
    caches = drop_caches()
    state = {
        "load_1m": round(load, 2),
        "load_settled": settled,
        "caches": caches,
        "settle_seconds": round(time.monotonic() - started, 1),
    }
    say(
        f"settle ({label}): load average {load:.2f} "
        + (f"below {limit:.2f}" if settled else f"still above {limit:.2f} after {SETTLE_SECONDS:.0f} s; going on")
        + f"; page cache {'dropped' if caches == 'dropped' else 'not dropped (' + caches + ')'}; {warm_note}"
    )
    return state


def drop_caches() -> str:
    """Drop the page cache (``sync; echo 3 > /proc/sys/vm/drop_caches``) where permitted; say what happened."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        return f"not permitted: {error.strerror}"
    return "dropped"


# --- Results --------------------------------------------------------------------------------------------------


def spread(values: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """Median and [min, max] of repeated measurements."""
    return {
        "median": round(statistics.median(values), digits),
        "range": [round(min(values), digits), round(max(values), digits)],
    }


def target(figure: float | None, goal: float, *, under: bool) -> dict[str, Any]:
    """The target beside the figure (strictly under ``goal``, or at least ``goal``) and whether it is met."""
    meets = figure is not None and (figure < goal if under else figure >= goal)
    return {"target": f"{'<' if under else '>='} {goal}", "meets_target": bool(meets)}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def run_in_workdir(args, name: str, measure: Callable[[str, Path], list[dict[str, Any]]]) -> int:
    """``run_databases`` with a work folder of its own, removed at the end unless ``--keep``.

    A SIGTERM (bench/run.py's time limit) unwinds through the finally blocks that stop the servers.
    """
    import signal
    import tempfile

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix=f"clicktrail-bench-{name}-"))
    try:
        return run_databases(args.database, lambda database: measure(database, workdir))
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_databases(choice: str, measure: Callable[[str], list[dict[str, Any]]]) -> int:
    """Measure on each chosen database in turn; print each JSON line; 1 when any database could not measure."""
    failed = 0
    try:
        for database in selected(choice):
            try:
                for result in measure(database):
                    emit(result)
            except SeededOnly as done:
                say(f"seeding only: {done}")
            except Exception:  # one database failing must not hide the other's figures
                import traceback

                traceback.print_exc()
                say(f"could not measure on {database}")
                failed += 1
    finally:
        stop_cluster_if_started()
    return 1 if failed else 0


def make_click_months(url: str, first: datetime, last: datetime) -> list[str]:
    """On PostgreSQL, make the month partitions of clicks from ``first`` to ``last`` that are missing.

    The migration makes months from the oldest click it found (none, in a fresh database) to a few ahead;
    a seed writing older clicks makes theirs first, so that none lands in the default partition.
    """
    if url.startswith("sqlite"):
        return []
    from sqlalchemy import create_engine, text

    from affiliate.services import partitions

    engine = create_engine(url)
    made = []
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": partitions.LOCK_KEY})
            have = partitions.existing(conn)
            for month in partitions.months_between(first, last):
                if month.name not in have:
                    partitions.make_month(conn, month)
                    made.append(month.name)
    finally:
        engine.dispose()
    if made:
        say(f"made click partitions {', '.join(made)}")
    return made
