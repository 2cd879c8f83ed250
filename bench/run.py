"""Run every benchmark and print each one's JSON lines (``make bench``); docs/benchmarks.md says how to read them.

The redirector, ingest, conversions, reports and payouts benches run on SQLite and on a throwaway
PostgreSQL cluster that this script starts (bench/pgcluster.py) and stops at the end; the others on
SQLite. In two phases:

1. Seeding: each two-database bench runs with BENCH_SEED_ONLY=1 and builds the worlds it needs that are
   not cached yet (bench/common.py); with everything cached this takes seconds. A first run seeds for
   long (the 50M-click world for an hour or more); the limits of this phase say how long at most.
2. Measuring: before each script the machine is settled (no process of an earlier bench left, the load
   average low or a bounded wait, the page cache dropped where permitted; each bench then warms up once),
   and each script runs within its limit.

Exits non-zero only when a benchmark could not measure (crashed, timed out, printed nothing, or left out
a database); a figure that misses its target is reported ("meets_target": false), never a failure.

Usage: .venv/bin/python bench/run.py [--only NAME[,NAME...]] [--skip-seeding]
Quick trial of the scripts (meaningless figures): BENCH_QUICK=1; skip the 50M world: BENCH_SKIP_50M=1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if __name__ == "__main__":
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
    sys.path.insert(0, str(ROOT))

from bench import common, pgcluster  # noqa: E402
from bench.common import say  # noqa: E402

SKIP_50M = os.environ.get("BENCH_SKIP_50M", "") not in ("", "0")


@dataclass(frozen=True)
class Script:
    """A benchmark script, whether it runs on both databases, and its limits in seconds."""

    name: str
    both: bool
    limit: int  # measuring, with its worlds cached
    seed_limit: int = 0  # seeding the worlds it needs from nothing (0: it has none to seed)


SCRIPTS = (
    # Per database: 3 pairs of 10 s runs with warm-ups, starts and drains, and the naive design once.
    Script("redirector.py", both=True, limit=1200, seed_limit=900),
    # Per database: 60 s of load, then the backlog drains (at most 600 s); the world is the redirector's.
    Script("ingest.py", both=True, limit=1800, seed_limit=900),
    # Per database: 3 s of warm-up and 15 s of sales; seeding 1,000,000 clicks takes minutes.
    Script("conversions.py", both=True, limit=900, seed_limit=3600),
    # 5M clicks on both, 50M on PostgreSQL: seeding 50M takes an hour or more on 2 cores.
    Script("reports.py", both=True, limit=1800, seed_limit=3600 if SKIP_50M else 4 * 3600),
    # Per database: a warm-up build rolled back and the timed build; seeding 1,000,000 commissions takes minutes.
    Script("payouts.py", both=True, limit=600, seed_limit=3600),
    Script("deliveries.py", both=False, limit=300),
    Script("fraud.py", both=False, limit=300),
    Script("login_interference.py", both=False, limit=300),
)


def run_script(script: Script, env: dict[str, str], limit: int, *, seeding: bool = False) -> tuple[list[dict], bool]:
    """Run one script within ``limit`` seconds; return the JSON objects it printed and whether it exited cleanly."""
    path = BENCH_DIR / script.name
    say(f"[run] {path.relative_to(ROOT)}{' (seeding)' if seeding else ''}, limit {limit} s")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, _ = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        say(f"[run] {script.name} ran past {limit} s; stopping it")
        process.send_signal(signal.SIGTERM)  # each script stops its servers on SIGTERM
        try:
            stdout, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, _ = process.communicate()
        return [], False
    results = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            print(line, file=sys.stderr)
            continue
        if isinstance(value, dict) and "bench" in value:
            results.append(value)
    say(f"[run] {script.name} took {time.monotonic() - started:.0f} s")
    if process.returncode != 0:
        say(f"[run] {script.name} exited with {process.returncode}")
    return results, process.returncode == 0


def missing(script: Script, results: list[dict]) -> list[str]:
    """What a script should have measured and did not: nothing at all, or one of the databases."""
    if not results:
        return ["every figure"]
    if not script.both:
        return []
    found = {result.get("database") for result in results}
    return [database for database in common.DATABASES if database not in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated script names (e.g. redirector,ingest)")
    parser.add_argument("--skip-seeding", action="store_true", help="no seeding phase (worlds seed when first used)")
    args = parser.parse_args(argv)
    scripts = SCRIPTS
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only.split(",")}
        scripts = tuple(script for script in SCRIPTS if script.name.removesuffix(".py") in wanted)
    if common.QUICK:
        say("BENCH_QUICK=1: small worlds and short loads, to try the scripts; the figures mean nothing")
    if SKIP_50M:
        say("BENCH_SKIP_50M=1: the 50,000,000-click reports world is left out")
    started_cluster = not pgcluster.running()
    url = pgcluster.start()
    env = {**os.environ, "BENCH_POSTGRES_URL": url, common.MARKER: uuid.uuid4().hex}
    failed: list[str] = []
    try:
        seeded_badly: set[str] = set()
        if not args.skip_seeding:
            say("[run] seeding phase: builds the worlds not cached yet; a first run takes long (see the limits)")
            for script in scripts:
                if script.seed_limit:
                    _, clean = run_script(script, {**env, "BENCH_SEED_ONLY": "1"}, script.seed_limit, seeding=True)
                    if not clean:
                        seeded_badly.add(script.name)
        say("[run] measuring phase")
        for script in scripts:
            if script.name in seeded_badly:
                say(f"[run] {script.name}: its worlds could not be seeded; not measured")
                failed.append(script.name)
                continue
            common.settle(f"before {script.name}", warm_note="the bench warms up itself")
            results, clean = run_script(script, env, script.limit)
            for result in results:
                print(json.dumps(result), flush=True)
            gaps = missing(script, results)
            if gaps or not clean:
                say(f"[run] {script.name} could not measure: {', '.join(gaps) or 'it exited with an error'}")
                failed.append(script.name)
    finally:
        if started_cluster:
            pgcluster.stop()
    if failed:
        say(f"[run] could not measure: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
