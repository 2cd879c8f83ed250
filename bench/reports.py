"""Benchmark the report pages on 5,000,000 clicks and 100,000 conversions, against the figures from raw clicks.

The seeded database (SQLite, like bench/redirector.py's: 100 affiliates, 10,000 links, then clicks
and conversions written straight into their tables over 90 days, rollups rebuilt by
`flask rollup --rebuild`) is cached under bench/.cache/, keyed by the migrations and this seed, so
only the first run pays for it. Then the affiliate dashboard and the staff overview are rendered
through the app (Flask's test client, signed in) for ranges of 7, 30 and 90 days, and the
dashboard's click figures (totals, the daily series, breakdowns by link, country, device, browser,
referrer and sub1) are computed again from raw clicks for the same affiliate and range.
Prints one JSON line; diagnostics go to stderr.

Usage: .venv/bin/python bench/reports.py [--rounds N] [--rebuild-cache]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path and would shadow the redirector package.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench.redirector import BIN, bench_env, create_database, say  # noqa: E402

CLICKS = 5_000_000
CONVERSIONS = 100_000
DAYS = 90
SEED_VERSION = 1
CHUNK = 100_000
ROUNDS = 20  # renders of each page per range
RAW_ROUNDS = 3  # the raw computation takes seconds: a few samples of it are enough
RANGES = (7, 30, 90)
CACHE = ROOT / "bench" / ".cache"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - create_database's throwaway accounts
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "IN", "BR", "NL", "ES", "IT", "SE", "PL", "JP", None)
DEVICES = ("desktop", "mobile", "tablet")
BROWSERS = ("Chrome", "Mobile Safari", "Firefox", "Edge", "Samsung Internet", "Chrome Mobile", "Opera")
REFERRERS = ("https://www.google.com/", "https://t.co/x", "https://news.example.org/post", None, None)
BOT_REASONS = ("link_preview", "known_bot", "automation_tool", "headless_browser")


def cache_key() -> str:
    digest = hashlib.sha256(f"seed {SEED_VERSION} {CLICKS} {CONVERSIONS} {DAYS}".encode())
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def seed_clicks(database: Path, now: datetime, rng: random.Random) -> None:
    """CLICKS clicks over DAYS days, in time order, with the dimensions the reports break down by."""
    started = time.monotonic()
    db = sqlite3.connect(database)
    db.execute("PRAGMA synchronous=OFF")
    links = db.execute("SELECT id, affiliate_id, program_id, sub1 FROM links").fetchall()
    # Some links and affiliates get far more traffic than others.
    weights = [rng.paretovariate(1.3) for _ in links]
    columns = ("click_id, link_id, affiliate_id, program_id, clicked_at, ip, is_bot, bot_reason, country, "
               "device_type, browser, referrer, sub1, fingerprint, visitor_id, is_unique, fraud_score, "
               "fraud_action")  # fmt: skip
    insert = f"INSERT INTO clicks ({columns}) VALUES ({', '.join('?' * 18)})"  # noqa: S608 - fixed text
    span = DAYS * 86400
    step = span / CLICKS
    for start in range(0, CLICKS, CHUNK):
        rows = []
        chosen = rng.choices(links, weights=weights, k=min(CHUNK, CLICKS - start))
        for offset, (link_id, affiliate_id, program_id, sub1) in enumerate(chosen):
            n = start + offset
            at = now - timedelta(seconds=span - n * step)
            bot = rng.random() < 0.08
            rejected = not bot and rng.random() < 0.02
            rows.append(
                (
                    f"R{n:09d}{rng.getrandbits(64):016x}",
                    link_id,
                    affiliate_id,
                    program_id,
                    stamp(at),
                    f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    bot,
                    rng.choice(BOT_REASONS) if bot else None,
                    rng.choice(COUNTRIES),
                    rng.choice(DEVICES),
                    rng.choice(BROWSERS),
                    rng.choice(REFERRERS),
                    sub1,
                    f"{rng.getrandbits(64):016x}",
                    f"V{rng.randrange(2_000_000):021d}",
                    rng.random() < 0.7,
                    100 if rejected else 0,
                    "reject" if rejected else None,
                )
            )
        db.executemany(insert, rows)
        db.commit()
        if (start // CHUNK) % 10 == 9:
            say(f"  {start + CHUNK:,} clicks written")
    db.close()
    say(f"wrote {CLICKS:,} clicks in {time.monotonic() - started:.0f} s")


def seed_conversions(database: Path, now: datetime, rng: random.Random) -> None:
    """CONVERSIONS signups and sales over the same days, credited to the affiliates (rollups kept by triggers)."""
    started = time.monotonic()
    db = sqlite3.connect(database)
    db.execute("PRAGMA synchronous=OFF")
    affiliates = [row[0] for row in db.execute("SELECT id FROM users WHERE role = 'affiliate'")]
    program_id = db.execute("SELECT id FROM programs").fetchone()[0]
    rows = []
    for n in range(CONVERSIONS):
        at = stamp(now - timedelta(seconds=rng.uniform(0, DAYS * 86400)))
        sale = rng.random() < 0.6
        status = rng.choices(("pending", "approved", "flagged", "rejected"), weights=(60, 30, 7, 3))[0]
        rows.append(
            (
                program_id,
                "sale" if sale else "signup",
                f"order-{n}",
                rng.choice((1999, 4999, 12900)) if sale else 0,
                "USD",
                rng.choice(affiliates),
                status,
                at,
                at,
                0,
            )
        )
    db.executemany(
        "INSERT INTO conversions (program_id, type, order_id, amount_cents, currency, affiliate_id, status, "
        "occurred_at, created_at, fraud_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()
    say(f"wrote {CONVERSIONS:,} conversions in {time.monotonic() - started:.0f} s")


def build_cache(directory: Path) -> None:
    building = directory.with_name(directory.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    instance = building / "instance"
    instance.mkdir(parents=True)
    database = instance / "bench.db"
    env = bench_env(instance, database)
    create_database(instance, database, env)
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    seed_clicks(database, now, rng)
    seed_conversions(database, now, rng)
    started = time.monotonic()
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "rollup", "--rebuild"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=sys.stderr,
        stderr=sys.stderr,
        timeout=1800,
    )
    say(f"rollups rebuilt in {time.monotonic() - started:.0f} s")
    (building / "seeded_at").write_text(now.isoformat())
    building.rename(directory)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def raw_figures(database: Path, affiliate_id: int, start: date, end: date) -> int:
    """The dashboard's click figures from raw clicks; returns how many rows the queries produced."""
    human = "(NOT is_bot AND (fraud_action IS NULL OR fraud_action != 'reject'))"
    where = "affiliate_id = ? AND clicked_at >= ? AND clicked_at < ?"
    args = (affiliate_id, f"{start} 00:00:00", f"{end + timedelta(days=1)} 00:00:00")
    produced = 0
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        totals = f"COUNT(*), SUM({human}), SUM({human} AND is_unique)"
        produced += len(db.execute(f"SELECT {totals} FROM clicks WHERE {where}", args).fetchall())  # noqa: S608
        for group in (
            "substr(clicked_at, 1, 10)",
            "link_id",
            "country",
            "device_type",
            "browser",
            "referrer",
            "sub1",
            "bot_reason",
        ):
            sql = f"SELECT {group}, {totals} FROM clicks WHERE {where} GROUP BY {group}"  # noqa: S608 - fixed text
            produced += len(db.execute(sql, args).fetchall())
    return produced


def measure(directory: Path, rounds: int) -> dict:
    instance = directory / "instance"
    database = instance / "bench.db"
    seeded_at = datetime.fromisoformat((directory / "seeded_at").read_text())
    env = bench_env(instance, database)
    from affiliate import create_app
    from config import DevelopmentConfig

    app = create_app(
        DevelopmentConfig,
        {
            "INSTANCE_PATH": str(instance),
            "SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"],
            "SECRET_KEY": env["SECRET_KEY"],
            "WTF_CSRF_ENABLED": False,
            "MONEY_JOBS_SECONDS": 0,
        },
    )
    with sqlite3.connect(database) as db:
        (top,) = db.execute(
            "SELECT affiliate_id FROM clicks GROUP BY affiliate_id ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()
        email = db.execute("SELECT email FROM users WHERE id = ?", (top,)).fetchone()[0]
        clicks = db.execute("SELECT COUNT(*) FROM clicks").fetchone()[0]
        conversions = db.execute("SELECT COUNT(*) FROM conversions").fetchone()[0]
    affiliate, staff = app.test_client(), app.test_client()
    for client, login in ((affiliate, email), (staff, "admin@bench.test")):
        answer = client.post("/login", data={"email": login, "password": PASSWORD})
        assert answer.status_code == 302, f"could not sign in as {login}: {answer.status_code}"
    end = seeded_at.date()
    timings: dict[str, list[float]] = {"dashboard": [], "overview": [], "raw": []}
    for round_number in range(rounds):
        for days in RANGES:
            start = end - timedelta(days=days - 1)
            query = f"?start={start}&end={end}"
            for name, client, path in (
                ("dashboard", affiliate, "/partner/reports/"),
                ("overview", staff, "/admin/reports/"),
            ):
                began = time.perf_counter()
                answer = client.get(path + query)
                timings[name].append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, f"{path}{query}: {answer.status_code}"
            if round_number < RAW_ROUNDS:
                began = time.perf_counter()
                raw_figures(database, top, start, end)
                timings["raw"].append((time.perf_counter() - began) * 1000)
    both = timings["dashboard"] + timings["overview"]
    for name, values in timings.items():
        say(
            f"{name}: p50 {percentile(values, 0.5):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, "
            f"{len(values)} renders"
        )
    return {
        "bench": "reports",
        "p50_ms": round(percentile(both, 0.5), 1),
        "p95_ms": round(percentile(both, 0.95), 1),
        "dashboard_p95_ms": round(percentile(timings["dashboard"], 0.95), 1),
        "overview_p95_ms": round(percentile(timings["overview"], 0.95), 1),
        "raw_p50_ms": round(percentile(timings["raw"], 0.5), 1),
        "ratio_vs_raw": round(statistics.median(timings["raw"]) / statistics.median(timings["dashboard"]), 1),
        "clicks": clicks,
        "conversions": conversions,
        "database": "sqlite",
    }


def main(argv: list[str] | None = None) -> int:
    global CLICKS, CONVERSIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--rebuild-cache", action="store_true", help="seed a fresh database even if one is cached")
    parser.add_argument("--clicks", type=int, default=CLICKS, help="a smaller world, to try the script")
    args = parser.parse_args(argv)
    CLICKS, CONVERSIONS = args.clicks, CONVERSIONS * args.clicks // CLICKS
    directory = CACHE / f"reports-{cache_key()}"
    if args.rebuild_cache:
        shutil.rmtree(directory, ignore_errors=True)
    if not directory.exists():
        for stale in CACHE.glob("reports-*"):
            shutil.rmtree(stale, ignore_errors=True)  # seeded for other migrations: gigabytes no longer used
        say(f"seeding {CLICKS:,} clicks and {CONVERSIONS:,} conversions into {directory} (cached for later runs)")
        build_cache(directory)
    print(json.dumps(measure(directory, args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
