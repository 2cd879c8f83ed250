"""Benchmark whether click ingest keeps up with the redirector at its highest rate, on SQLite and PostgreSQL.

Per database: a copy of the cached world of 10,000 links (bench/redirector.py's), a settled machine,
then the redirector under granian as production runs it (RSGI, 2 workers, CLICK_INGESTER=process: the
workers append to the click log and one ingester process stores it), warmed up for a moment and drained,
then driven by wrk exactly as bench/redirector.py drives it, flat out, for DURATION seconds. Measured:
clicks answered (302s), clicks stored when wrk stopped, the sustained ingest rate (stored per second
over the run), the backlog left in the click log when wrk stopped, in clicks and in seconds of the run's
answer rate, and how long the backlog then took to drain. The target: a backlog under one second of
traffic. Prints one JSON line per database; diagnostics go to stderr.

Usage: .venv/bin/python bench/ingest.py [--database sqlite|postgresql|both] [--duration SECONDS] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path and would shadow the redirector package.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.redirector import (  # noqa: E402
    REDIRECTOR_INTERFACE,
    WORKERS,
    ensure_wrk,
    link_codes,
    links_world,
    load_scripts,
    logged_clicks,
    run_wrk,
    say,
    serving,
    stored_clicks,
    wait_for_ingest,
)

BACKLOG_TARGET_SECONDS = 1.0  # of the run's answer rate
DRAIN_LIMIT_SECONDS = 600


def measure(database: str, duration: int, warmup: int, workdir: Path) -> dict[str, Any]:
    wrk = ensure_wrk()
    workdir = workdir / database
    workdir.mkdir()
    world = links_world(database, workdir)
    try:
        env = {**world.env, "CLICK_INGESTER": "process"}
        lua, _ = load_scripts(workdir, link_codes(world.url), [])
        settled = common.settle(f"ingest on {database}", warm_note=f"{warmup} s of warm-up load, then drained")
        with serving("redirector", "wsgi:redirector", env, workdir, REDIRECTOR_INTERFACE) as server:
            if warmup:
                run_wrk(wrk, server, lua, warmup, label="warm-up")
                wait_for_ingest(world.instance, timeout=120)
            before = stored_clicks(world.url)
            load = run_wrk(wrk, server, lua, duration)
            stored = stored_clicks(world.url) - before
            backlog = logged_clicks(world.instance)
            stopped = time.monotonic()
            drain = wait_for_ingest(world.instance, timeout=DRAIN_LIMIT_SECONDS)
            drained = logged_clicks(world.instance) == 0
            drain_seconds = time.monotonic() - stopped if drained else None
            stored_after = stored_clicks(world.url) - before
    finally:
        world.dispose()
    answered = load.redirects
    seconds = duration
    backlog_seconds = backlog / load.rps if load.rps else 0.0
    say(
        f"ingest on {database}: answered {answered} ({load.rps:.0f}/s), stored {stored} by the end of the run "
        f"({stored / seconds:.0f}/s), {backlog} clicks in the click log ({backlog_seconds:.1f} s of traffic), "
        + (f"drained {drain:.1f} s later" if drained else f"not drained after {DRAIN_LIMIT_SECONDS} s")
        + f"; {stored_after} stored in all"
    )
    return {
        "bench": "ingest",
        "database": database,
        "backlog_seconds": round(backlog_seconds, 2),
        **common.target(backlog_seconds, BACKLOG_TARGET_SECONDS, under=True),
        "answered": answered,
        "answer_rate": round(load.rps),
        "stored_by_end": stored,
        "ingest_rate": round(stored / seconds),
        "backlog_clicks": backlog,
        "drain_seconds": round(drain_seconds, 1) if drain_seconds is not None else None,
        "stored_after_drain": stored_after,
        "unaccounted": answered - stored_after,
        "p99_ms": round(load.p99_ms, 2),
        "ingester": "process",
        "interface": REDIRECTOR_INTERFACE,
        "workers": WORKERS,
        "duration_s": duration,
        "warmup_s": warmup,
        "setup_seconds": round(world.setup_seconds, 1),
        **settled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=common.quick(60, 10), help="seconds of load (default 60)")
    parser.add_argument("--warmup", type=int, default=common.quick(2, 1), help="seconds of warm-up load")
    common.add_database_argument(parser)
    args = parser.parse_args(argv)
    return common.run_in_workdir(
        args, "ingest", lambda database, workdir: [measure(database, args.duration, args.warmup, workdir)]
    )


if __name__ == "__main__":
    sys.exit(main())
