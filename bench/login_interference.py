"""Benchmark how much people signing in slow the conversion API down, on SQLite.

Argon2 costs tens of milliseconds of CPU by design; computed inside a write transaction it would hold
SQLite's one write lock that every conversion waits for. One run: a fresh SQLite database seeded like
bench/redirector.py, two accounts created with `flask create-user` (so their hashes have the
production Argon2 settings), and the portal under granian (2 workers, 8 blocking threads each, as
`make run`). wrk posts pre-signed sales (no click, so none waits for one) at 2 connections in
phases of PHASE_SECONDS: alternately quiet, and busy with two loops signing in with the right
password as fast as they are answered. Each round runs one quiet and one busy phase, in alternating
order. Prints one JSON line: the median p50 and p99 of each kind of phase, their range over the
rounds, and the ratio of the medians' p99s (signing in should at most double it).

Usage: .venv/bin/python bench/login_interference.py [--rounds N] [--phase SECONDS] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path and would shadow the redirector package.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench.conversions import LUA, issue_key  # noqa: E402
from bench.redirector import BIN, bench_env, create_database, ensure_wrk, say, serving  # noqa: E402

ROUNDS = 3
PHASE_SECONDS = 6
CONNECTIONS = 2
WRK_THREADS = 1
PORTAL_THREADS = 8
SIGN_IN_LOOPS = 2
REQUESTS = 20_000  # pre-signed sales, each sent once; more than a run can send
PASSWORD = "bench sign-in passphrase"  # noqa: S105 - a throwaway database
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def write_requests(path: Path, token: str, secret: str) -> None:
    """Pre-signed sales without a click, one per line as bench/conversions.py's Lua script reads them."""
    timestamp = int(time.time())
    with path.open("w") as out:
        for n in range(REQUESTS):
            body = json.dumps(
                {
                    "type": "sale",
                    "order_id": f"login-bench-{n}",
                    "amount": 4999,
                    "currency": "USD",
                    "customer": {"external_id": f"cus-{n}"},
                },
                separators=(",", ":"),
            )
            request_id = f"login-bench-{n}"
            message = f"{request_id}.{timestamp}.".encode() + body.encode()
            signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
            out.write(f"{request_id}\t{timestamp}\t{signature}\t{token}\t{body}\n")


def create_sign_in_accounts(env: dict[str, str]) -> list[str]:
    """Accounts made by `flask create-user`, so their hashes carry the configured (production) Argon2 cost."""
    emails = [f"signin{n}@bench.test" for n in range(SIGN_IN_LOOPS)]
    for email in emails:
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "create-user", "--email", email, "--role", "affiliate"],
            cwd=ROOT,
            env={**env, "CLICKTRAIL_PASSWORD": PASSWORD},
            check=True,
            stdout=sys.stderr,
            timeout=60,
        )
    return emails


class SignInLoop(threading.Thread):
    """Sign in with the right password again and again, each time as a new browser, until stopped."""

    def __init__(self, port: int, email: str, address: str) -> None:
        super().__init__(daemon=True)
        self.port, self.email, self.address = port, email, address
        self.stopping = threading.Event()
        self.signed_in = 0
        self.errors = 0

    def once(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"X-Forwarded-For": self.address}
            connection.request("GET", "/login", headers=headers)
            page = connection.getresponse()
            html = page.read().decode()
            cookies = "; ".join(
                value.split(";", 1)[0] for key, value in page.getheaders() if key.lower() == "set-cookie"
            )
            match = CSRF.search(html)
            if page.status != 200 or not match:
                return False
            form = urlencode({"email": self.email, "password": PASSWORD, "csrf_token": match.group(1)})
            headers.update({"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"})
            connection.request("POST", "/login", body=form, headers=headers)
            answer = connection.getresponse()
            answer.read()
            return answer.status == 302
        except OSError:
            return False
        finally:
            connection.close()

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.once():
                self.signed_in += 1
            else:
                self.errors += 1


def wrk_phase(wrk: str, lua: Path, url: str, seconds: int) -> dict:
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout=30s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return json.loads(lines[-1].removeprefix("WRK_RESULT "))


def summary(phases: list[dict], key: str) -> tuple[float, list[float]]:
    values = [phase[key] / 1000 for phase in phases]
    return round(statistics.median(values), 2), [round(min(values), 2), round(max(values), 2)]


def run(rounds: int, phase_seconds: int, workdir: Path) -> dict:
    wrk = ensure_wrk()
    instance = workdir / "instance"
    instance.mkdir()
    database = instance / "bench.db"
    env = bench_env(instance, database)
    create_database(instance, database, env)
    emails = create_sign_in_accounts(env)
    token, secret = issue_key(instance, env)
    requests_path = workdir / "requests.tsv"
    write_requests(requests_path, token, secret)
    lua = workdir / "conversions.lua"
    lua.write_text(LUA.replace("@PATH@", json.dumps(str(requests_path))).replace("@THREADS@", str(WRK_THREADS)))
    quiet: list[dict] = []
    busy: list[dict] = []
    signed_in = sign_in_errors = 0
    busy_seconds = 0.0
    with serving("portal", "wsgi:portal", env, workdir, threads=PORTAL_THREADS) as server:
        for round_number in range(rounds):
            order = ("quiet", "busy") if round_number % 2 == 0 else ("busy", "quiet")
            for kind in order:
                if kind == "quiet":
                    quiet.append(wrk_phase(wrk, lua, server.url, phase_seconds))
                    continue
                loops = [SignInLoop(server.port, email, f"192.0.2.{10 + n}") for n, email in enumerate(emails)]
                started = time.monotonic()
                for loop in loops:
                    loop.start()
                busy.append(wrk_phase(wrk, lua, server.url, phase_seconds))
                for loop in loops:
                    loop.stopping.set()
                for loop in loops:
                    loop.join(60)
                busy_seconds += time.monotonic() - started
                signed_in += sum(loop.signed_in for loop in loops)
                sign_in_errors += sum(loop.errors for loop in loops)
    errors = sum(int(p["requests"] - p["s201"] + p["errors"]) for p in quiet + busy)
    quiet_p50, quiet_p50_range = summary(quiet, "p50_us")
    quiet_p99, quiet_p99_range = summary(quiet, "p99_us")
    busy_p50, busy_p50_range = summary(busy, "p50_us")
    busy_p99, busy_p99_range = summary(busy, "p99_us")
    quiet_p99s = [round(p["p99_us"] / 1000, 1) for p in quiet]
    busy_p99s = [round(p["p99_us"] / 1000, 1) for p in busy]
    say(f"p99 per phase: quiet {quiet_p99s} ms, busy {busy_p99s} ms; {signed_in} sign-ins, {sign_in_errors} failed")
    return {
        "bench": "login_interference",
        "quiet_p50_ms": quiet_p50,
        "quiet_p99_ms": quiet_p99,
        "busy_p50_ms": busy_p50,
        "busy_p99_ms": busy_p99,
        "p99_ratio": round(busy_p99 / quiet_p99, 2) if quiet_p99 else None,
        "quiet_p50_range_ms": quiet_p50_range,
        "quiet_p99_range_ms": quiet_p99_range,
        "busy_p50_range_ms": busy_p50_range,
        "busy_p99_range_ms": busy_p99_range,
        "sign_ins_per_second": round(signed_in / busy_seconds, 1) if busy_seconds else 0,
        "sign_in_errors": sign_in_errors,
        "conversion_errors": errors,
        "conversions": int(sum(p["s201"] for p in quiet + busy)),
        "rounds": rounds,
        "phase_s": phase_seconds,
        "database": "sqlite",
        "server": "granian",
        "workers": 2,
        "threads_per_worker": PORTAL_THREADS,
        "connections": CONNECTIONS,
        "sign_in_loops": SIGN_IN_LOOPS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"quiet and busy phase pairs (default {ROUNDS})")
    parser.add_argument("--phase", type=int, default=PHASE_SECONDS, help=f"seconds per phase (default {PHASE_SECONDS})")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    # A SIGTERM (from bench/run.py's time limit) unwinds through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="clicktrail-bench-login-"))
    try:
        result = run(args.rounds, args.phase, workdir)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
