"""Benchmark webhook and postback deliveries: throughput and latency to a live receiver, recovery from a dead one.

A fresh migrated SQLite database; a receiver in this process on 127.0.0.1 (a threaded HTTPS server for
webhooks, with a throwaway CA the senders trust through SSL_CERT_FILE, and a plain-HTTP one for postbacks)
that records each message (webhook-id, or the postback's path and query), checks each webhook's signature
and answers 200. Prints two JSON lines; diagnostics go to stderr.

1. ``deliveries``: a program with ENDPOINTS webhook endpoints and two postbacks (an affiliate's GET and a
   program-wide POST), sent by SENDERS ``flask send-webhooks --loop`` processes, as production runs them.
   Backlog: N webhook messages and 2 x P postbacks written at once; ``per_second`` is messages received
   per second from the first receipt to the last. Paced: then PACED_SECONDS of webhooks written as events
   happen, at half that rate; ``p95_latency_ms`` is from each delivery's created_at to its first receipt
   (the senders' poll interval, ``every_s``, bounds it from below when they are idle).
2. ``deliveries_receiver_down``: a second program's endpoints and postback point at closed ports while M
   messages are written; SENDERS threads run rounds of ``delivery.send_due`` with a clock that jumps to
   the next due retry whenever nothing is due (the backoff of services/deliveries.py, without the wait).
   The receiver comes back DOWNTIME seconds (sender's clock) after the messages were written; the result
   is how long, on the sender's clock and on the wall, until every message was received.

``lost`` is messages never received (must be 0: the script exits 1 otherwise); ``duplicates`` is receipts
beyond the first of a message (delivery is at least once, so some are allowed, but they should be rare).

Usage: .venv/bin/python bench/deliveries.py [--webhooks N] [--senders K] [--every S] [--keep]
"""

from __future__ import annotations

import argparse
import hmac
import http.server
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path and would shadow the redirector package.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench.redirector import BIN, bench_env, cpu_busy, migrate, say  # noqa: E402
from tests.certificates import Certificates, make_certificates  # noqa: E402
from tests.servers import free_port  # noqa: E402

WEBHOOKS = 3_000  # backlog: webhook messages (WEBHOOKS / ENDPOINTS events)
CONVERSIONS = 300  # backlog: conversions, each firing two postbacks
ENDPOINTS = 4
SENDERS = 2
EVERY = 2.0  # seconds an idle `flask send-webhooks --loop` waits (its default)
PACED_SECONDS = 8
PACED_FRACTION = 0.5  # of the backlog's rate
PACED_TICK = 0.05
DOWN_WEBHOOKS = 400  # receiver down: webhook messages (to DOWN_ENDPOINTS endpoints)
DOWN_CONVERSIONS = 100  # receiver down: conversions, each firing one postback
DOWN_ENDPOINTS = 2
DOWNTIME = 600  # seconds of the sender's clock the receiver stays down
CLAIM_LIMIT = 100  # send_due's default, which the CLI uses
WAIT_SECONDS = 60  # for a phase's messages to arrive
DOWN_WALL_SECONDS = 45  # for the whole receiver-down run
GRACE_SECONDS = 1.0  # after the last message arrived, for late duplicates
EVENTS = ("conversion.created", "commission.created", "commission.approved", "payout.paid")


# --- The receiver --------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, port: int, receiver: Receiver, tls: ssl.SSLContext | None) -> None:
        self.receiver, self.tls = receiver, tls
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request, client_address) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake in the connection's own thread, so a slow one never holds up accept().
        request.settimeout(10)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.receiver.note_error(f"TLS: {error}")
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.receiver.record(self.path, self.headers, body)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request would drown the bench's own output."""


def signature_ok(secret: str, headers, body: bytes) -> bool:
    """Check a Standard Webhooks signature (without the age limit: the receiver-down run's clock jumps)."""
    from standardwebhooks.webhooks import Webhook

    message_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp") or ""
    if not message_id or not stamp.isdigit():
        return False
    expected = Webhook(secret).sign(message_id, datetime.fromtimestamp(int(stamp), UTC), body)
    return any(hmac.compare_digest(expected, given) for given in (headers.get("webhook-signature") or "").split())


class Receiver:
    """Listens on 127.0.0.1 ports (HTTPS or HTTP) and records when each message arrived, on the wall and on the
    sender's clock (``offset`` seconds ahead of the wall)."""

    def __init__(self, offset: Callable[[], float] = lambda: 0.0) -> None:
        self.offset = offset
        self.secrets: dict[str, str] = {}  # webhook path -> its endpoint's signing secret
        self.receipts: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.bad_signatures = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.servers: list[_Server] = []

    def serve(self, port: int = 0, tls: ssl.SSLContext | None = None) -> int:
        server = _Server(port, self, tls)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.servers.append(server)
        return server.server_address[1]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers.clear()

    def record(self, path: str, headers, body: bytes) -> None:
        wall = time.time()
        if path.startswith("/hooks/"):
            key = headers.get("webhook-id") or f"no-id:{path}"
            good = path in self.secrets and signature_ok(self.secrets[path], headers, body)
        else:
            key, good = path, True
        with self.lock:
            self.receipts[key].append((wall, wall + self.offset()))
            self.bad_signatures += not good

    def note_error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(text)

    def count_received(self, keys: list[str]) -> int:
        with self.lock:
            return sum(1 for key in keys if key in self.receipts)

    def wait_for(self, keys: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count_received(keys) < len(keys):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


# --- The app and its data --------------------------------------------------------------------------------------


@dataclass
class Program:
    """A program whose endpoints and postbacks point at the receiver's ports."""

    id: int
    affiliate_id: int
    endpoint_ids: list[int]
    postback_ids: list[int]
    secrets: dict[str, str]  # webhook path -> secret
    conversions: int = 0


@dataclass
class Phase:
    """The deliveries one phase wrote: the receiver's key of each, and its created_at as a POSIX time."""

    keys: list[str] = field(default_factory=list)
    created: dict[str, float] = field(default_factory=dict)
    webhooks: int = 0
    postbacks: int = 0


def receiver_key(message_id: str, webhook_id: int | None, url: str) -> str:
    """What the receiver files a delivery under: its webhook-id, or a postback's path and query."""
    if webhook_id:
        return message_id
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def create_app(env: dict[str, str]):
    from affiliate import create_app
    from config import DevelopmentConfig

    return create_app(
        DevelopmentConfig,
        {
            "INSTANCE_PATH": env["CLICKTRAIL_INSTANCE"],
            "SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"],
            "SECRET_KEY": env["SECRET_KEY"],
            "ARGON2_TIME_COST": 1,  # one password hash while seeding; not what this measures
            "ARGON2_MEMORY_KIB": 8192,
            "ARGON2_PARALLELISM": 1,
        },
    )


def create_program(app, label: str, https_port: int, http_port: int, endpoints: int, *, program_wide: bool) -> Program:
    """An admin, an affiliate and a program with webhook endpoints and postbacks at the receiver's ports."""
    from dataclasses import replace

    from affiliate import outbound
    from affiliate.demo import DEMO_PROGRAM
    from affiliate.extensions import db
    from affiliate.models import Role, UserStatus, utcnow
    from affiliate.services import postbacks, webhooks
    from affiliate.services.accounts import create_user
    from affiliate.services.programs import save_program

    check_webhook = partial(outbound.check_url, allow_loopback=True)
    check_postback = partial(outbound.check_url, allow_http=True, allow_loopback=True)
    with app.app_context():
        now = utcnow()
        password_hash = app.extensions["clicktrail.hasher"].hash("bench-password-not-secret")
        people = {
            role: create_user(
                db.session,
                name=f"Bench {label} {role}",
                email=f"{label}-{role}@bench.test",
                password_hash=password_hash,
                role=role,
                status=UserStatus.ACTIVE,
                now=now,
            )
            for role in (Role.ADMIN, Role.AFFILIATE)
        }
        admin, affiliate = people[Role.ADMIN], people[Role.AFFILIATE]
        settings = replace(
            DEMO_PROGRAM,
            name=f"Bench {label}",
            description="Benchmark program",
            destination_url="https://shop.example.com/",
            allowed_hosts=("shop.example.com",),
            fallback_url=None,
        )
        program = save_program(db.session, None, settings, actor=admin, now=now)
        found = Program(program.id, affiliate.id, [], [], {})
        for n in range(endpoints):
            path = f"/hooks/{label}/{n}"
            endpoint = webhooks.create_endpoint(
                db.session,
                program,
                webhooks.EndpointSettings(f"https://127.0.0.1:{https_port}{path}", ("*",)),
                actor=admin,
                now=now,
                check_url=check_webhook,
            )
            found.endpoint_ids.append(endpoint.id)
            found.secrets[path] = endpoint.secret
        base = f"http://127.0.0.1:{http_port}/pb/{label}"
        choices = [(affiliate.id, f"{base}/affiliate/{{conversion_id}}?order={{order_id}}&event={{event}}", "GET")]
        if program_wide:
            choices.append((None, f"{base}/program/{{conversion_id}}?amount={{amount}}&currency={{currency}}", "POST"))
        for owner, template, method in choices:
            postback = postbacks.save(
                db.session,
                program,
                owner,
                postbacks.PostbackSettings(template, method, ("conversion.recorded",)),
                actor=admin,
                now=now,
                check_url=check_postback,
            )
            found.postback_ids.append(postback.id)
        db.session.commit()
    return found


def emit(app, program: Program, events: int, conversions: int, now: Callable[[], datetime]) -> Phase:
    """Write webhook events and conversions' postbacks in one transaction; return what was written."""
    from sqlalchemy import func, select

    from affiliate.extensions import db
    from affiliate.models import Conversion, Delivery
    from affiliate.services import postbacks, webhooks

    with app.app_context():
        before = db.session.scalar(select(func.max(Delivery.id))) or 0
        for n in range(events):
            data = {"id": n, "amount_cents": 4999, "currency": "USD", "affiliate_id": program.affiliate_id}
            webhooks.emit(db.session, program.id, EVENTS[n % len(EVENTS)], data, now=now())
        rows = []
        for _ in range(conversions):
            program.conversions += 1
            rows.append(
                Conversion(
                    program_id=program.id,
                    type="sale",
                    order_id=f"order-{program.conversions}",
                    amount_cents=4999,
                    currency="USD",
                    affiliate_id=program.affiliate_id,
                    status="pending",
                    occurred_at=now(),
                    created_at=now(),
                )
            )
        db.session.add_all(rows)
        db.session.flush()
        for conversion in rows:
            postbacks.emit(db.session, conversion, "conversion.recorded", now=now(), commission_cents=500)
        db.session.commit()
        written = db.session.execute(
            select(Delivery.message_id, Delivery.webhook_id, Delivery.url, Delivery.created_at).where(
                Delivery.id > before
            )
        ).all()
        db.session.commit()
    phase = Phase()
    for message_id, webhook_id, url, created_at in written:
        key = receiver_key(message_id, webhook_id, url)
        phase.keys.append(key)
        phase.created[key] = created_at.timestamp()
        phase.webhooks += bool(webhook_id)
        phase.postbacks += not webhook_id
    return phase


def statuses(app, program: Program) -> dict[str, int]:
    """How many of the program's deliveries are pending, delivered and dead."""
    from sqlalchemy import func, or_, select

    from affiliate.database import reading
    from affiliate.extensions import db
    from affiliate.models import Delivery

    with app.app_context(), reading(db.session):
        owner = or_(Delivery.webhook_id.in_(program.endpoint_ids), Delivery.postback_id.in_(program.postback_ids))
        return dict(
            db.session.execute(select(Delivery.status, func.count()).where(owner).group_by(Delivery.status)).all()
        )


def next_due(app, program: Program) -> datetime | None:
    """When the program's next pending delivery is due."""
    from sqlalchemy import func, or_, select

    from affiliate.database import reading
    from affiliate.extensions import db
    from affiliate.models import Delivery

    with app.app_context(), reading(db.session):
        owner = or_(Delivery.webhook_id.in_(program.endpoint_ids), Delivery.postback_id.in_(program.postback_ids))
        value = db.session.scalar(select(func.min(Delivery.next_attempt_at)).where(owner, Delivery.status == "pending"))
    if value is not None and value.tzinfo is None:  # func.min on SQLite skips the column's type
        value = datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    return value


# --- Figures ---------------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Tally:
    received: int
    lost: int
    duplicates: int
    first: float  # wall time of the first receipt
    last: float  # wall time of the last first receipt
    latencies_ms: list[float]


def tally(receiver: Receiver, phase: Phase) -> Tally:
    with receiver.lock:
        seen = {key: list(receiver.receipts[key]) for key in phase.keys if key in receiver.receipts}
    firsts = {key: min(wall for wall, _ in times) for key, times in seen.items()}
    return Tally(
        received=len(seen),
        lost=len(phase.keys) - len(seen),
        duplicates=sum(len(times) - 1 for times in seen.values()),
        first=min(firsts.values(), default=0.0),
        last=max(firsts.values(), default=0.0),
        latencies_ms=[(firsts[key] - phase.created[key]) * 1000 for key in firsts],
    )


# --- 1. A live receiver, `flask send-webhooks --loop` processes ------------------------------------------------


def start_senders(env: dict[str, str], count: int, every: float) -> list[subprocess.Popen]:
    command = [str(BIN / "flask"), "--app", "wsgi", "send-webhooks", "--loop", "--every", str(every)]
    return [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(count)]


def stop_senders(senders: list[subprocess.Popen]) -> list[int | None]:
    """Stop the sender processes; return the exit code of any that had stopped on its own (None: still ran)."""
    early = [process.poll() for process in senders]
    for process in senders:
        if process.poll() is None:
            process.terminate()
    for process in senders:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return early


def live(app, env: dict[str, str], certificates: Certificates, args: argparse.Namespace) -> dict[str, Any]:
    from affiliate.models import utcnow

    receiver = Receiver()
    senders: list[subprocess.Popen] = []
    try:
        https_port = receiver.serve(tls=certificates.server_context())
        http_port = receiver.serve()
        program = create_program(app, "live", https_port, http_port, ENDPOINTS, program_wide=True)
        receiver.secrets.update(program.secrets)
        senders = start_senders(env, args.senders, args.every)
        # Once one warm-up message arrives, a sender is in its loop; the others started with it.
        warm = emit(app, program, 1, 0, utcnow)
        if not receiver.wait_for(warm.keys, 30):
            raise SystemExit(f"the senders delivered no warm-up message in 30 s; receiver errors: {receiver.errors}")
        time.sleep(1.0)

        started = time.monotonic()
        backlog = emit(app, program, args.webhooks // ENDPOINTS, args.conversions, utcnow)
        say(
            f"live: wrote {backlog.webhooks} webhook messages and {backlog.postbacks} postbacks in "
            f"{time.monotonic() - started:.1f} s"
        )
        arrived = receiver.wait_for(backlog.keys, WAIT_SECONDS)
        time.sleep(GRACE_SECONDS)
        drained = tally(receiver, backlog)
        span = max(drained.last - drained.first, 1e-6)
        per_second = drained.received / span
        say(
            f"live: backlog of {len(backlog.keys)} {'received' if arrived else 'NOT all received'} in {span:.1f} s "
            f"({per_second:.0f}/s), {drained.duplicates} duplicates"
        )

        # Paced: events written as they happen, at a fraction of the rate the backlog drained at.
        rate = max(10.0, per_second * PACED_FRACTION)  # deliveries per second
        paced = Phase()
        started = time.monotonic()
        events = 0
        while (elapsed := time.monotonic() - started) < args.paced:
            due = int(elapsed * rate / ENDPOINTS) + 1 - events
            if due > 0:
                written = emit(app, program, due, 0, utcnow)
                events += due
                paced.keys += written.keys
                paced.created.update(written.created)
                paced.webhooks += written.webhooks
            time.sleep(PACED_TICK)
        receiver.wait_for(paced.keys, WAIT_SECONDS)
        time.sleep(GRACE_SECONDS)
        steady = tally(receiver, paced)
        p50, p95 = statistics.median(steady.latencies_ms or [0]), percentile(steady.latencies_ms, 0.95)
        say(
            f"live: paced {len(paced.keys)} messages over {args.paced} s at {rate:.0f}/s; "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        )
        exits = stop_senders(senders)
        counts = statuses(app, program)
    finally:
        stop_senders(senders)
        receiver.close()
    if any(code is not None for code in exits):
        say(f"live: a sender process stopped on its own (exit codes {exits})")
    if receiver.errors:
        say(f"live: receiver errors: {receiver.errors[:5]}")
    return {
        "bench": "deliveries",
        "database": "sqlite",
        "per_second": round(per_second, 1),
        "p95_latency_ms": round(p95),
        "p50_latency_ms": round(p50),
        "paced_per_second": round(rate, 1),
        "paced_messages": len(paced.keys),
        "backlog_p95_latency_ms": round(percentile(drained.latencies_ms, 0.95)),
        "backlog_s": round(span, 2),
        "lost": drained.lost + steady.lost,
        "duplicates": drained.duplicates + steady.duplicates,
        "messages": len(backlog.keys),
        "webhooks": backlog.webhooks,
        "postbacks": backlog.postbacks,
        "bad_signatures": receiver.bad_signatures,
        "pending_after": counts.get("pending", 0),
        "dead": counts.get("dead", 0),
        "sender_exits": sum(code is not None for code in exits),
        "senders": args.senders,
        "sender": "flask send-webhooks --loop (processes)",
        "every_s": args.every,
        "claim_limit": CLAIM_LIMIT,
        "endpoints": ENDPOINTS,
        "receiver": "ThreadingHTTPServer on 127.0.0.1 (HTTPS webhooks, HTTP postbacks), in the bench process",
    }


# --- 2. The receiver down, then back: threads with a jumping clock --------------------------------------------


def send_round(app, senders: int, clock: Callable[[], datetime]) -> list[tuple[int, int]]:
    """One send_due round in each of ``senders`` threads at once, each in an app context of its own."""
    from affiliate import delivery, jobs

    results: list[Any] = [None] * senders

    def work(index: int) -> None:
        try:
            results[index] = jobs.in_context(app, partial(delivery.send_due, clock=clock, limit=CLAIM_LIMIT))
        except Exception as error:  # handed to the caller below
            results[index] = error

    threads = [threading.Thread(target=work, args=(index,)) for index in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def receiver_down(app, certificates: Certificates, args: argparse.Namespace) -> dict[str, Any]:
    from affiliate.models import utcnow

    offset = [0.0]  # how far the senders' clock is ahead of the wall, in seconds

    def clock() -> datetime:
        return utcnow() + timedelta(seconds=offset[0])

    receiver = Receiver(offset=lambda: offset[0])
    https_port, http_port = free_port(), free_port()  # nothing listens there until the receiver is back
    try:
        program = create_program(app, "down", https_port, http_port, DOWN_ENDPOINTS, program_wide=False)
        receiver.secrets.update(program.secrets)
        phase = emit(app, program, args.down_webhooks // DOWN_ENDPOINTS, DOWN_CONVERSIONS, clock)
        written_at = clock()
        up_at = written_at + timedelta(seconds=args.downtime)
        wall_started = time.monotonic()
        wall_up = sim_up = None
        rounds = jumps = failed_tries = 0
        complete = False
        while time.monotonic() - wall_started < DOWN_WALL_SECONDS:
            if wall_up is None and clock() >= up_at:
                receiver.serve(https_port, certificates.server_context())
                receiver.serve(http_port)
                wall_up, sim_up = time.time(), clock()
                say(
                    f"down: receiver back after {(sim_up - written_at).total_seconds():.0f} s (sender's clock); "
                    f"{failed_tries} failed tries so far"
                )
            results = send_round(app, args.senders, clock)
            rounds += 1
            failed_tries += sum(failed for _, failed in results)
            if any(sent or failed for sent, failed in results):
                continue
            # Nothing was due: done, or jump to the next retry (or to the receiver's return, if sooner).
            if receiver.count_received(phase.keys) == len(phase.keys) and not statuses(app, program).get("pending"):
                complete = True
                break
            target = next_due(app, program)
            if target is None:
                break  # nothing pending, yet not everything received: dead, or lost
            if wall_up is None:
                target = min(target, up_at)
            gap = (target - clock()).total_seconds()
            if gap > 0:
                offset[0] += gap
                jumps += 1
        wall_seconds = time.monotonic() - wall_started
        time.sleep(0.2)
        counts = statuses(app, program)
    finally:
        receiver.close()
    result = tally(receiver, phase)
    with receiver.lock:
        sim_firsts = [min(sim for _, sim in receiver.receipts[key]) for key in phase.keys if key in receiver.receipts]
    sim_up_s = sim_up.timestamp() if sim_up else None
    say(
        f"down: {'all' if complete else 'NOT all'} {len(phase.keys)} messages received; {rounds} rounds, {jumps} "
        f"clock jumps, {failed_tries} failed tries, {wall_seconds:.1f} s on the wall"
    )
    return {
        "bench": "deliveries_receiver_down",
        "database": "sqlite",
        "messages": len(phase.keys),
        "webhooks": phase.webhooks,
        "postbacks": phase.postbacks,
        "down_s": args.downtime,
        "first_after_up_s": round(min(sim_firsts) - sim_up_s, 1) if sim_firsts and sim_up_s else None,
        "all_after_up_s": round(max(sim_firsts) - sim_up_s, 1) if sim_firsts and sim_up_s else None,
        "all_after_written_s": round(max(sim_firsts) - written_at.timestamp(), 1) if sim_firsts else None,
        "wall_after_up_s": round(result.last - wall_up, 2) if wall_up and result.received else None,
        "wall_s": round(wall_seconds, 2),
        "failed_tries": failed_tries,
        "rounds": rounds,
        "clock_jumps": jumps,
        "lost": result.lost,
        "duplicates": result.duplicates,
        "dead": counts.get("dead", 0),
        "pending_after": counts.get("pending", 0),
        "bad_signatures": receiver.bad_signatures,
        "senders": args.senders,
        "sender": "threads calling delivery.send_due(clock=...) in app contexts, in lockstep rounds",
        "claim_limit": CLAIM_LIMIT,
        "endpoints": DOWN_ENDPOINTS,
    }


# --- Running it ----------------------------------------------------------------------------------------------


def run(workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both benchmarks; each prints its JSON line as soon as it has one."""
    busy = cpu_busy(1.0)
    if busy > 0.25:
        say(f"warning: the CPUs were {busy:.0%} busy before the run; other work on this machine lowers the figures")
    instance = workdir / "instance"
    instance.mkdir()
    certificates = make_certificates(workdir / "tls", "127.0.0.1")
    env = bench_env(instance, instance / "bench.db")
    env.update(
        OUTBOUND_ALLOW_LOOPBACK="1",  # the receiver is on 127.0.0.1 (development config: allowed)
        POSTBACK_ALLOW_HTTP="1",
        # delivery.py passes no CA to outbound.send, so the senders trust the bench's CA through OpenSSL's
        # default verify paths: this process and the sender processes only.
        SSL_CERT_FILE=str(certificates.ca),
        DELIVERY_SENDER_SECONDS="0",  # only the senders measured here send
        MAIL_SENDER_SECONDS="0",
        MONEY_JOBS_SECONDS="0",
        RETENTION_JOBS_SECONDS="0",
    )
    started = time.monotonic()
    migrate(env)
    say(f"migrated a fresh SQLite database in {time.monotonic() - started:.1f} s")
    os.environ.update(env)  # the app in this process (the receiver-down senders) reads the same settings
    app = create_app(env)
    machine = {
        "database": "sqlite",
        "cpus": os.cpu_count(),
        "cpu_busy_before": round(busy, 2),
        "python": sys.version.split()[0],
    }
    results = []
    for bench in (partial(live, app, env, certificates, args), partial(receiver_down, app, certificates, args)):
        results.append(bench() | machine)
        print(json.dumps(results[-1]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=WEBHOOKS, help=f"backlog webhook messages ({WEBHOOKS})")
    parser.add_argument(
        "--conversions", type=int, default=CONVERSIONS, help=f"backlog conversions, two postbacks each ({CONVERSIONS})"
    )
    parser.add_argument("--senders", type=int, default=SENDERS, help=f"sender processes or threads ({SENDERS})")
    parser.add_argument("--every", type=float, default=EVERY, help=f"idle senders' wait in seconds ({EVERY})")
    parser.add_argument("--paced", type=float, default=PACED_SECONDS, help=f"seconds of paced load ({PACED_SECONDS})")
    parser.add_argument(
        "--down-webhooks", type=int, default=DOWN_WEBHOOKS, help=f"receiver-down webhook messages ({DOWN_WEBHOOKS})"
    )
    parser.add_argument("--downtime", type=int, default=DOWNTIME, help=f"seconds the receiver is down ({DOWNTIME})")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    # A SIGTERM (from bench/run.py's time limit) unwinds through the finally blocks that stop senders and servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="clicktrail-bench-deliveries-"))
    started = time.monotonic()
    try:
        results = run(workdir, args)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"finished in {time.monotonic() - started:.1f} s")
    lost = sum(result["lost"] for result in results)
    if lost:
        say(f"FAILED: {lost} messages were never received")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
