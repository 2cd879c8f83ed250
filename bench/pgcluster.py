"""The benchmarks' own throwaway PostgreSQL cluster: Debian's server binaries, a data directory under bench/.cache/.

The data directory survives between runs, so the seeded template databases in it do too; the server runs
only while a bench needs it. Durability is production's (fsync and synchronous_commit on); memory settings
suit a machine of about 24 GiB shared with the app servers and load generators, and are printed on start.

Run by hand: ``.venv/bin/python -m bench.pgcluster start`` prints the URL, ``... stop`` stops it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BENCH_PG_DIR", ROOT / "bench" / ".cache" / "postgres"))
PORT = int(os.environ.get("BENCH_PG_PORT", "55439"))
START_SECONDS = 120
# For a 24 GiB machine: a quarter of it for shared buffers, most of the rest counted on as the OS page cache;
# generous WAL so that seeding tens of millions of rows does not checkpoint every few seconds.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "6GB",
    "effective_cache_size": "16GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "1GB",
    "wal_buffers": "64MB",
    "max_wal_size": "16GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "1",
    "autovacuum": "on",
    "jit": "off",  # JIT compiles a query for tens of ms on a 2-core machine: short report queries only lose
    "log_min_duration_statement": "-1",
}


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name.split(".")[0]))
    if not found or not (found[-1] / "initdb").exists():
        raise SystemExit(
            "bench: no PostgreSQL server binaries under /usr/lib/postgresql; install Debian's postgresql package"
        )
    return found[-1]


def as_owner(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a server command as the cluster's owner (the postgres user when we are root: initdb refuses root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # The server is no bench's leftover: it must not carry the mark bench/common.py's settle looks for.
    env = {key: value for key, value in os.environ.items() if key != "CLICKTRAIL_BENCH_RUN"}
    return subprocess.run(command, cwd="/", env=env, **kwargs)


def url() -> str:
    return f"postgresql://postgres@127.0.0.1:{PORT}/postgres"


def running() -> bool:
    if not (DATA / "PG_VERSION").exists():
        return False
    return as_owner([str(bindir() / "pg_ctl"), "-D", str(DATA), "status"], capture_output=True).returncode == 0


def start() -> str:
    """Start the cluster (creating it on first use) and return its URL."""
    binaries = bindir()
    if not (DATA / "PG_VERSION").exists():
        shutil.rmtree(DATA, ignore_errors=True)
        DATA.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(DATA, "postgres", "postgres")
            # The postgres user must be able to reach its data directory through the cache folder.
            DATA.parent.chmod(DATA.parent.stat().st_mode | 0o011)
        DATA.chmod(0o700)
        say(f"creating the bench PostgreSQL cluster in {DATA}")
        created = as_owner(
            [str(binaries / "initdb"), "-D", str(DATA), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise SystemExit(f"bench: initdb failed:\n{created.stdout}\n{created.stderr}")
    if not running():
        options = " ".join([f"-p {PORT}", f"-k {DATA}", *(f"-c {name}={value}" for name, value in SETTINGS.items())])
        started = as_owner(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(DATA),
                "-l",
                str(DATA / "server.log"),
                "-w",
                "-t",
                str(START_SECONDS),
                "-o",
                options,
                "start",
            ],
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            tail = (DATA / "server.log").read_text(errors="replace").splitlines()[-20:]
            raise SystemExit("bench: the bench PostgreSQL cluster did not start:\n" + "\n".join(tail))
        say(
            f"bench PostgreSQL {binaries.parent.name} on port {PORT}, data in {DATA}; "
            + ", ".join(f"{name}={value}" for name, value in SETTINGS.items() if name != "listen_addresses")
        )
    return url()


def stop() -> None:
    if running():
        as_owner([str(bindir() / "pg_ctl"), "-D", str(DATA), "-m", "fast", "-w", "stop"], capture_output=True)
        say("bench PostgreSQL stopped")


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "start"
    if action == "start":
        print(start())
    elif action == "stop":
        stop()
    else:
        raise SystemExit("usage: python -m bench.pgcluster start|stop")
