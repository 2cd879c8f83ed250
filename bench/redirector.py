"""Benchmark the click redirector against a bare 302 (and the naive Flask + ORM design), on SQLite and PostgreSQL.

Per database: a copy of the cached world of 10,000 links (bench/common.py), a settled machine, then
granian serving (a) a bare WSGI app answering a fixed 302 and (b) the real redirector (RSGI, clicks
stored by the ingester process, as production) in alternation, baseline then redirector, PAIRS times,
each server warmed up for a moment and then driven by wrk for 10 s at 32 connections with a few hundred
realistic user agents and client IPs; the click log is drained after each redirector run so that the
ingester never runs under the next baseline. Then (c) the naive design once. The ratio is per pair
(redirector / the baseline just before it); the JSON line gives the median and [min, max] of it, of the
rates and of p99. Prints one JSON line per database to stdout; diagnostics go to stderr.

Usage: .venv/bin/python bench/redirector.py [--database sqlite|postgresql|both] [--pairs N] [--duration SECONDS]
       [--warmup SECONDS] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path and this file would shadow the redirector package.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import BIN, migrate, say  # noqa: E402 - the other benches import them from here
from tests.servers import children, free_port  # noqa: E402

WORKERS = 2
BLOCKING_THREADS = int(os.environ.get("BENCH_BLOCKING_THREADS", "32"))  # for the WSGI apps
# The redirector as production runs it: granian's RSGI interface (one event loop per worker).
REDIRECTOR_INTERFACE = os.environ.get("BENCH_REDIRECTOR_INTERFACE", "rsgi")
EXTRA_RSGI_ARGS = os.environ.get("BENCH_RSGI_ARGS", "").split()
CONNECTIONS = 32
RATIO_TARGET = 0.30  # of the bare baseline's rate
P99_TARGET_MS = 10
WRK_THREADS = 2
WRK_TIMEOUT_SECONDS = 30
LINKS = 10_000
AFFILIATES = 100
USER_AGENTS = 300
CLIENT_IPS = 300
REQUESTS_PER_CODE = 3  # distinct prepared requests per link code and wrk thread
SEED = 3
SERVER_START_SECONDS = 30
SERVER_STOP_SECONDS = 15
DESTINATION = "https://shop.example.com/signup"
LANGUAGES = [
    "en-US,en;q=0.9",
    "en-GB,en;q=0.8",
    "de-DE,de;q=0.9,en;q=0.6",
    "fr-FR,fr;q=0.9",
    "es-ES,es;q=0.9",
    "pt-BR,pt;q=0.9",
    "nl-NL,nl;q=0.9",
    "ja-JP,ja;q=0.9",
    "it-IT,it;q=0.8",
    "pl-PL,pl;q=0.9",
]
LOG_PATTERN = re.compile(r"error|exception|traceback|warning|locked|refused|not confirmed", re.IGNORECASE)

# (weight, template) for browsers, roughly today's mix of platforms; _browser_fields fills them in.
BROWSERS = (
    (22, "Mozilla/5.0 ({windows}) {webkit} Chrome/{chrome} Safari/537.36"),
    (6, "Mozilla/5.0 (Macintosh; {mac}) {webkit} Chrome/{chrome} Safari/537.36"),
    (2, "Mozilla/5.0 ({linux}) {webkit} Chrome/{chrome} Safari/537.36"),
    (20, "Mozilla/5.0 (Linux; Android {android}; {phone}) {webkit} Chrome/{chrome} Mobile Safari/537.36"),
    (1, "Mozilla/5.0 (Linux; Android {android}; {tablet}) {webkit} Chrome/{chrome} Safari/537.36"),
    (3, "Mozilla/5.0 ({iphone}) {ios_webkit} CriOS/{chrome} Mobile/15E148 Safari/604.1"),
    (4, "Mozilla/5.0 ({windows}; rv:{firefox}) Gecko/20100101 Firefox/{firefox}"),
    (1, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:{firefox}) Gecko/20100101 Firefox/{firefox}"),
    (1, "Mozilla/5.0 ({linux}; rv:{firefox}) Gecko/20100101 Firefox/{firefox}"),
    (1, "Mozilla/5.0 (Android {android}; Mobile; rv:{firefox}) Gecko/{firefox} Firefox/{firefox}"),
    (4, "Mozilla/5.0 (Macintosh; {mac}) {ios_webkit} Version/{safari} Safari/605.1.15"),
    (17, "Mozilla/5.0 ({iphone}) {ios_webkit} Version/{ios_version} Mobile/15E148 Safari/604.1"),
    (2, "Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) {ios_webkit} Version/{ios_version} Mobile/15E148 Safari/604.1"),
    (1, "Mozilla/5.0 ({iphone}) {ios_webkit} Mobile/15E148 {facebook_app}"),
    (6, "Mozilla/5.0 ({windows}) {webkit} Chrome/{chrome} Safari/537.36 Edg/{edge}"),
    (1, "Mozilla/5.0 (Macintosh; {mac}) {webkit} Chrome/{chrome} Safari/537.36 Edg/{edge}"),
    (1, "Mozilla/5.0 (Linux; Android {android}; {phone}) {webkit} Chrome/{chrome} Mobile Safari/537.36 EdgA/{edge}"),
    (
        5,
        "Mozilla/5.0 (Linux; Android {android}; SAMSUNG {galaxy}) {webkit} SamsungBrowser/{samsung} Chrome/{chrome} "
        "Mobile Safari/537.36",
    ),
)
ANDROID_PHONES = [
    "SM-S911B",
    "SM-S918U",
    "SM-A546B",
    "SM-G991B",
    "SM-A145F",
    "Pixel 7",
    "Pixel 8 Pro",
    "Pixel 6a",
    "moto g power (2022)",
    "M2101K6G",
    "CPH2451",
    "V2202",
    "RMX3630",
    "K",
]
IOS_VERSIONS = ("15_8", "16_6", "16_7_8", "17_0", "17_1_2", "17_4_1", "17_5", "17_6_1", "18_0", "18_1")
BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "curl/8.5.0",
    "curl/7.88.1",
    "python-requests/2.31.0",
    "Wget/1.21.4",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36",
)


def ensure_wrk() -> str:
    """Return the path of wrk, installing the Debian package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is not installed; run `sudo apt-get install -y wrk` (Debian package) and retry")
    say("wrk missing; installing it from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, stdout=sys.stderr, timeout=300, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, timeout=300, check=False)
        subprocess.run(install, env=env, stdout=sys.stderr, timeout=300, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: apt-get installed wrk but it is not on PATH")
    return found


def make_user_agents(rng: random.Random, count: int) -> list[str]:
    """A realistic mix of browser user agents across platforms and versions, about 5% of them bots."""
    bots = max(1, round(count * 0.05))
    weights = [weight for weight, _ in BROWSERS]
    agents: set[str] = set()
    while len(agents) < count - bots:
        template = rng.choices([template for _, template in BROWSERS], weights=weights)[0]
        agents.add(template.format(**_browser_fields(rng)))
    return sorted(agents) + list(BOTS[:bots])


def _browser_fields(rng: random.Random) -> dict[str, str]:
    ios = rng.choice(IOS_VERSIONS)
    chromium = rng.randint(109, 131)
    return {
        "windows": rng.choice(("Windows NT 10.0; Win64; x64", "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64")),
        "mac": rng.choice(("Intel Mac OS X 10_15_7", "Intel Mac OS X 10_15_6", "Intel Mac OS X 13_5")),
        "linux": rng.choice(("X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Fedora; Linux x86_64")),
        "android": str(rng.randint(10, 15)),
        "phone": rng.choice(ANDROID_PHONES),
        "tablet": rng.choice(("SM-X700", "SM-T870", "Lenovo TB-X606F")),
        "galaxy": rng.choice([phone for phone in ANDROID_PHONES if phone.startswith("SM-")]),
        "chrome": f"{chromium}.0.{rng.randint(5000, 6900)}.{rng.randint(0, 230)}",
        "edge": f"{chromium}.0.{rng.randint(1500, 2900)}.{rng.randint(0, 99)}",
        "firefox": f"{rng.randint(102, 133)}.0",
        "safari": rng.choice(("16.6", "17.1", "17.4.1", "17.6", "18.0", "18.1")),
        "samsung": f"{rng.randint(20, 26)}.0",
        "ios": ios,
        "ios_version": ".".join(ios.split("_")[:2]),
        "iphone": f"iPhone; CPU iPhone OS {ios} like Mac OS X",
        "webkit": "AppleWebKit/537.36 (KHTML, like Gecko)",
        "ios_webkit": "AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "facebook_app": f"[FBAN/FBIOS;FBAV/{rng.randint(400, 480)}.0.0.35.108;FBBV/595637431;FBDV/iPhone14,5;"
        f"FBMD/iPhone;FBSN/iOS;FBSV/{ios.replace('_', '.')};FBSS/3;FBLC/en_US;FBOP/5]",
    }


def make_client_ips(rng: random.Random, count: int) -> list[str]:
    """Public IPv4 addresses (never private, reserved or multicast); only used as header values."""
    found = {"81.2.69.160"}  # MaxMind's documented test address (GB)
    while len(found) < count:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            found.add(str(address))
    return sorted(found)


def lua_string(value: str) -> str:
    """Quote an ASCII string as a Lua literal."""
    if not value.isascii() or any(ord(char) < 32 for char in value):
        raise ValueError(f"not a plain ASCII value: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lua_table(values: list[str] | tuple[str, ...]) -> str:
    return "{\n" + ",\n".join(lua_string(value) for value in values) + "\n}"


LUA_TEMPLATE = """-- Generated by bench/redirector.py: a random link, user agent, client IP and language per request.
local codes = @CODES@
local agents = @AGENTS@
local ips = @IPS@
local languages = @LANGUAGES@
local ids_path = @IDS_PATH@
local names = {"s302", "s3xx", "s2xx", "s4xx", "s5xx", "sother"}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local pool = {}

-- Requests are built up front, so wrk spends one table lookup per request rather than a
-- wrk.format call that alone cuts the bare baseline's rate by a fifth. Every code appears
-- @REPEAT@ times per thread, each time with its own random user agent, client IP and language.
function init(args)
  math.randomseed(os.time() * 100 + thread_number)
  for _, name in ipairs(names) do _G[name] = 0 end
  ids = {}
  for round = 1, @REPEAT@ do
    for _, code in ipairs(codes) do
      pool[#pool + 1] = wrk.format("GET", "/r/" .. code, {
        ["User-Agent"] = agents[math.random(#agents)],
        ["X-Forwarded-For"] = ips[math.random(#ips)],
        ["Accept-Language"] = languages[math.random(#languages)],
        ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      })
    end
  end
end

function request()
  return pool[math.random(#pool)]
end

function response(status, headers, body)
  if status == 302 then
    s302 = s302 + 1
    if ids_path ~= "" then
      local location = headers["location"] or headers["Location"] or ""
      local id = string.match(location, "[?&]ct_click=([%w_%-]+)")
      if id then ids[#ids + 1] = id end
    end
  elseif status >= 300 and status < 400 then s3xx = s3xx + 1
  elseif status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status >= 400 and status < 500 then s4xx = s4xx + 1
  elseif status >= 500 and status < 600 then s5xx = s5xx + 1
  else sother = sother + 1 end
end

function done(summary, latency, requests)
  local totals = {}
  for _, name in ipairs(names) do totals[name] = 0 end
  local out = nil
  if ids_path ~= "" then out = assert(io.open(ids_path, "w")) end
  for _, thread in ipairs(threads) do
    for _, name in ipairs(names) do totals[name] = totals[name] + (thread:get(name) or 0) end
    if out then
      for _, id in ipairs(thread:get("ids") or {}) do out:write(id, "\\n") end
    end
  end
  if out then out:close() end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %.0f, "duration_us": %.0f, "p50_us": %.1f, "p99_us": %.1f, "max_us": %.1f, ' ..
    '"mean_us": %.1f, "connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f, "s302": %.0f, ' ..
    '"s3xx": %.0f, "s2xx": %.0f, "s4xx": %.0f, "s5xx": %.0f, "sother": %.0f}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.timeout, totals.s302, totals.s3xx, totals.s2xx, totals.s4xx,
    totals.s5xx, totals.sother))
end
"""


def write_lua(path: Path, codes: list[str], agents: list[str], ips: list[str], ids_path: Path | None) -> None:
    """Write the wrk script; with ids_path, it also saves the click id of every 302 it received."""
    replacements = {
        "@CODES@": lua_table(codes),
        "@AGENTS@": lua_table(agents),
        "@IPS@": lua_table(ips),
        "@LANGUAGES@": lua_table(LANGUAGES),
        "@IDS_PATH@": lua_string(str(ids_path) if ids_path else ""),
        "@REPEAT@": str(REQUESTS_PER_CODE),
    }
    script = LUA_TEMPLATE
    for marker, value in replacements.items():
        script = script.replace(marker, value)
    path.write_text(script)


def bench_env(instance: Path, database: Path | str) -> dict[str, str]:
    """The environment every server and command of the run gets (database: a SQLite file or a URL)."""
    return common.bench_env(instance, f"sqlite:///{database}" if isinstance(database, Path) else database)


def create_database(instance: Path, database: Path, env: dict[str, str]) -> list[str]:
    """Migrate a fresh database and seed an admin, affiliates, a program and links; return the link codes."""
    migrate(env)
    return seed_links(instance, env)


def seed_links(instance: Path, env: dict[str, str]) -> list[str]:
    """Seed a migrated database with an admin, affiliates, a program and links; return the link codes."""
    started = time.monotonic()

    from affiliate import create_app
    from affiliate.demo import DEMO_PROGRAM
    from affiliate.extensions import db
    from affiliate.models import Role, UserStatus, utcnow
    from affiliate.services.accounts import create_user
    from affiliate.services.links import LinkRequest, create_link
    from affiliate.services.programs import save_program
    from config import DevelopmentConfig

    app = create_app(
        DevelopmentConfig,
        {
            "INSTANCE_PATH": str(instance),
            "SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"],
            "SECRET_KEY": env["SECRET_KEY"],
            # Seeding hashes a password; production-strength argon2 is not what these benches measure.
            "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_KIB": 8192,
            "ARGON2_PARALLELISM": 1,
        },
    )
    codes: list[str] = []
    with app.app_context():
        now = utcnow()
        password_hash = app.extensions["clicktrail.hasher"].hash("bench-password-not-secret")
        admin = create_user(
            db.session,
            name="Bench Admin",
            email="admin@bench.test",
            password_hash=password_hash,
            role=Role.ADMIN,
            status=UserStatus.ACTIVE,
            now=now,
        )
        affiliates = [
            create_user(
                db.session,
                name=f"Affiliate {n}",
                email=f"affiliate{n}@bench.test",
                password_hash=password_hash,
                role=Role.AFFILIATE,
                status=UserStatus.ACTIVE,
                now=now,
            )
            for n in range(AFFILIATES)
        ]
        # The demo program's terms, on the bench's own destination.
        settings = replace(
            DEMO_PROGRAM,
            name="Bench Store",
            description="Benchmark program",
            destination_url=DESTINATION,
            allowed_hosts=("shop.example.com",),
            fallback_url=None,
        )
        program_id = save_program(db.session, None, settings, actor=admin, now=now).id
        db.session.commit()
        for n in range(LINKS):
            subs = (f"sub{n % 7}", None, None, None, None) if n % 3 == 0 else (None, None, None, None, None)
            request = LinkRequest(program_id=program_id, campaign=f"campaign-{n % 20}", subs=subs, deep_link=None)
            codes.append(create_link(db.session, affiliates[n % AFFILIATES], request, now=now).code)
            if len(codes) % 1000 == 0:
                db.session.commit()
        db.session.commit()
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()  # no connection of ours stays open on the database the servers use
    say(f"seeded {AFFILIATES} affiliates and {len(codes)} links in {time.monotonic() - started:.1f} s")
    return codes


def cpu_busy(seconds: float) -> float:
    """The fraction of all CPUs busy over the next few seconds (to flag a machine that is not quiet)."""

    def sample() -> tuple[int, int]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(1, total_after - total)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Server:
    """One granian server in its own process group, with its output in a log file."""

    def __init__(
        self,
        name: str,
        target: str,
        env: dict[str, str],
        log_path: Path,
        interface: str = "wsgi",
        threads: int = BLOCKING_THREADS,
    ) -> None:
        self.threads = threads
        self.name = name
        self.interface = interface
        self.target = target
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            str(BIN / "granian"),
            "--interface",
            self.interface,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(WORKERS),
            "--blocking-threads",
            str(self.threads if self.interface == "wsgi" else 1),
            "--no-ws",
            *(EXTRA_RSGI_ARGS if self.interface == "rsgi" else []),
            self.target,
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start:\n{self.log_tail()}")
            started = self.log_path.read_text(errors="replace").count("Started worker-")
            if started >= WORKERS and self._answers():
                say(f"{self.name}: granian pid {self.process.pid}, workers {children(self.process.pid)}, {self.url}")
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server did not answer within {SERVER_START_SECONDS} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/bench-ready")  # not a link: nothing is recorded
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def workers(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def stop(self) -> None:
        """Terminate the whole process group, killing it if it does not stop in time."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                say(f"{self.name}: did not stop within {SERVER_STOP_SECONDS} s; killing it")
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        if self.process is not None:
            # Workers left behind by a dead master would hold the port and the database.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_findings(self, limit: int = 12) -> list[str]:
        """Lines of the server's log that look like trouble, most frequent first."""
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            if LOG_PATTERN.search(line) and "spawning up to" not in line:
                key = re.sub(r"\d+", "N", line.strip())[:300]
                counts[key] = counts.get(key, 0) + 1
        return [f"{count} x {line}" for line, count in sorted(counts.items(), key=lambda item: -item[1])[:limit]]


@contextmanager
def serving(
    name: str, target: str, env: dict[str, str], workdir: Path, interface: str = "wsgi", threads: int = BLOCKING_THREADS
) -> Iterator[Server]:
    """Run one server for the duration of the block and report what its log says went wrong."""
    server = Server(name, target, env, workdir / f"{name}.log", interface, threads)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        findings = server.log_findings() if server.log_path.exists() else []
        for finding in findings:
            say(f"{name} log: {finding}")


class RssSampler(threading.Thread):
    """Sample the resident memory of the server's workers while the load runs."""

    def __init__(self, server: Server, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.peak: dict[int, float] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for pid in self.server.workers():
            self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def finish(self) -> float:
        self._stop_event.set()
        self.join()
        self.sample()
        return max(self.peak.values(), default=0.0)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]

    @property
    def redirects(self) -> int:
        return self.statuses["s302"]

    @property
    def not_302(self) -> int:
        return sum(count for name, count in self.statuses.items() if name != "s302")


def run_wrk(wrk: str, server: Server, lua: Path, duration: int, label: str = "") -> WrkResult:
    """Drive the server with wrk and read the line the Lua script prints."""
    # wrk leaves answers slower than --timeout (2 s by default) out of its latency histogram: widen it so p99 sees them.
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT_SECONDS}s",
        "--latency",
        "-s",
        str(lua),
        server.url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    data = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    statuses = {name: int(data[name]) for name in ("s302", "s3xx", "s2xx", "s4xx", "s5xx", "sother")}
    socket_errors = {name: int(data[name]) for name in ("connect", "read", "write", "timeout")}
    result = WrkResult(
        requests=int(data["requests"]),
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        statuses=statuses,
        socket_errors=socket_errors,
    )
    say(
        f"{server.name}{' ' + label if label else ''}: {result.requests} requests, {result.rps:.0f} req/s, "
        f"p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms, statuses {statuses}, socket errors {socket_errors}"
    )
    return result


def stored_click_ids(url: str) -> set[str]:
    with common.connect(url) as connection:
        return {row[0] for row in connection.execute("SELECT click_id FROM clicks")}


def stored_clicks(url: str) -> int:
    return common.scalar(url, "SELECT count(*) FROM clicks")


def logged_clicks(instance: Path) -> int:
    """Clicks waiting in the redirector's click log (durable, but not yet in the database)."""
    return len(_logged_lines(instance))


def logged_click_ids(instance: Path) -> set[str]:
    """The ids of the clicks waiting in the redirector's click log."""
    return {json.loads(line)["click_id"] for line in _logged_lines(instance)}


def _logged_lines(instance: Path) -> list[bytes]:
    lines = []
    directory = instance / "clicklog"
    for path in [*directory.glob("clicks-*.log"), *directory.glob("sealed-*.log")]:
        with suppress(FileNotFoundError):  # stored and recycled meanwhile
            lines += [line for line in path.read_bytes().split(b"\0", 1)[0].split(b"\n") if line]
    return lines


DRAIN_LIMIT_SECONDS = 300  # a bound on waiting for the click log to be stored, for a run that never drains


def wait_for_ingest(instance: Path, timeout: float = 30.0) -> float:
    """Give the redirector's ingesters time to move the click log into the database; return the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while logged_clicks(instance) and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic() - started


def links_world(database: str, workdir: Path) -> common.World:
    """The cached world of AFFILIATES affiliates and LINKS links (bench/common.py's cache)."""

    def build(url: str, instance: Path, env: dict[str, str]) -> dict[str, Any]:
        seed_links(instance, env)
        return {}

    return common.world(database, "links", {"links": LINKS, "affiliates": AFFILIATES}, build, workdir)


def link_codes(url: str) -> list[str]:
    with common.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT code FROM links ORDER BY id")]


def load_scripts(workdir: Path, codes: list[str], ids_paths: list[Path]) -> tuple[Path, list[Path]]:
    """The untracked wrk script and one tracked script per ids path (each saving the click ids it got)."""
    rng = random.Random(SEED)
    agents = make_user_agents(rng, USER_AGENTS)
    ips = make_client_ips(rng, CLIENT_IPS)
    lua = workdir / "clicks.lua"
    write_lua(lua, codes, agents, ips, None)
    tracked = []
    for n, ids_path in enumerate(ids_paths):
        tracked.append(workdir / f"clicks-tracked-{n}.lua")
        write_lua(tracked[-1], codes, agents, ips, ids_path)
    say(f"{len(agents)} user agents, {len(ips)} client IPs, {len(codes)} links; wrk scripts in {workdir}")
    return lua, tracked


def measure(database: str, duration: int, pairs: int, warmup: int, workdir: Path) -> dict[str, Any]:
    """Alternate the bare baseline and the redirector ``pairs`` times on one database; return the figures."""
    wrk = ensure_wrk()
    workdir = workdir / database
    workdir.mkdir()
    world = links_world(database, workdir)
    try:
        return _measure(wrk, world, duration, pairs, warmup, workdir)
    finally:
        world.dispose()


def _measure(wrk: str, world: common.World, duration: int, pairs: int, warmup: int, workdir: Path) -> dict[str, Any]:
    env = world.env
    instance = world.instance
    codes = link_codes(world.url)
    ids_paths = [workdir / f"acknowledged-{n}.txt" for n in range(pairs)]
    lua, tracked = load_scripts(workdir, codes, ids_paths)
    settled = common.settle(f"redirector on {world.database}", warm_note=f"each server gets {warmup} s of warm-up load")
    before = stored_click_ids(world.url)
    baselines: list[WrkResult] = []
    subjects: list[WrkResult] = []
    backlogs: list[int] = []
    lags: list[float] = []
    rss: list[float] = []
    for pair in range(pairs):
        with serving(f"baseline-{pair}", "bench.apps:bare_app", env, workdir) as server:
            if warmup:
                run_wrk(wrk, server, lua, warmup, label="warm-up")
            baselines.append(run_wrk(wrk, server, lua, duration))
        with serving(f"redirector-{pair}", "wsgi:redirector", env, workdir, REDIRECTOR_INTERFACE) as server:
            if warmup:
                run_wrk(wrk, server, lua, warmup, label="warm-up")
                wait_for_ingest(instance)
            sampler = RssSampler(server)
            sampler.start()
            try:
                subjects.append(run_wrk(wrk, server, tracked[pair], duration))
                backlogs.append(logged_clicks(instance))
                # Also keeps the ingester out of the next baseline; ends as soon as the log is stored.
                lags.append(wait_for_ingest(instance, timeout=DRAIN_LIMIT_SECONDS))
            finally:
                rss.append(sampler.finish())
        say(
            f"pair {pair + 1}/{pairs}: redirector {subjects[-1].rps:.0f}/s vs baseline {baselines[-1].rps:.0f}/s "
            f"(ratio {subjects[-1].rps / baselines[-1].rps:.3f}); {backlogs[-1]} clicks waited in the click log "
            f"when wrk stopped, stored {lags[-1]:.1f} s later"
        )
    wait_for_ingest(instance, timeout=60)
    in_log = logged_click_ids(instance)  # durable, not lost: stored by the next ingester on this directory
    stored_ids = stored_click_ids(world.url) - before
    acknowledged_ids: set[str] = set()
    for ids_path in ids_paths:
        if ids_path.exists():
            acknowledged_ids |= set(ids_path.read_text().split())
    lost = len(acknowledged_ids - stored_ids - in_log)
    acknowledged = sum(result.redirects for result in subjects)
    say(
        f"redirector: acknowledged {acknowledged} (ids read {len(acknowledged_ids)}), stored {len(stored_ids)} "
        f"(warm-up clicks included), acknowledged and neither stored nor in the click log {lost}, "
        f"still in the click log {len(in_log)}"
    )
    before_naive = stored_clicks(world.url)
    with serving("naive", "bench.apps:naive", env, workdir) as server:
        naive = run_wrk(wrk, server, lua, duration)
    say(f"naive: acknowledged {naive.redirects}, stored {stored_clicks(world.url) - before_naive}")

    ratios = [subject.rps / baseline.rps for subject, baseline in zip(subjects, baselines, strict=True)]
    ratio = common.spread(ratios, 3)
    p99 = common.spread([result.p99_ms for result in subjects])
    meets = ratio["median"] >= RATIO_TARGET and p99["median"] < P99_TARGET_MS
    return {
        "bench": "redirector",
        "database": world.database,
        "ratio": ratio["median"],
        "ratio_range": ratio["range"],
        "rps": round(statistics.median(result.rps for result in subjects)),
        "rps_range": [round(min(r.rps for r in subjects)), round(max(r.rps for r in subjects))],
        "p99_ms": p99["median"],
        "p99_ms_range": p99["range"],
        "p50_ms": round(statistics.median(result.p50_ms for result in subjects), 2),
        "baseline_rps": round(statistics.median(result.rps for result in baselines)),
        "baseline_rps_range": [round(min(r.rps for r in baselines)), round(max(r.rps for r in baselines))],
        "baseline_p99_ms": common.spread([result.p99_ms for result in baselines])["median"],
        "baseline_p99_ms_range": common.spread([result.p99_ms for result in baselines])["range"],
        "target": {"ratio": f">= {RATIO_TARGET}", "p99_ms": f"< {P99_TARGET_MS}"},
        "meets_target": meets,
        "pairs": pairs,
        "order": "baseline, redirector, alternating",
        "acknowledged": acknowledged,
        "lost": lost,
        "left_in_log": len(in_log),
        "non_3xx": sum(result.not_302 for result in subjects),
        "ingest_backlog": round(statistics.median(backlogs)),
        "ingest_lag_s": round(statistics.median(lags), 1),
        "rss_mb_per_worker": round(max(rss), 1),
        "naive_rps": round(naive.rps),
        "server": "granian",
        "interface": REDIRECTOR_INTERFACE,
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "duration_s": duration,
        "warmup_s": warmup,
        "setup_seconds": round(world.setup_seconds, 1),
        **settled,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line per database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=common.quick(10, 3), help="seconds of load per run")
    parser.add_argument("--pairs", type=int, default=common.quick(3, 2), help="baseline/redirector pairs (default 3)")
    parser.add_argument("--warmup", type=int, default=common.quick(2, 1), help="seconds of warm-up load per server")
    common.add_database_argument(parser)
    args = parser.parse_args(argv)
    return common.run_in_workdir(
        args,
        "redirector",
        lambda database, workdir: [measure(database, args.duration, args.pairs, args.warmup, workdir)],
    )


if __name__ == "__main__":
    sys.exit(main())
