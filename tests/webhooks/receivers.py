"""Receivers on loopback for the delivery tests, a clock the test moves, and the sender's rounds run at its time.

A receiver is a real HTTP (postbacks) or HTTPS (webhooks) server in a thread. It records what arrives, verifies
webhooks as a merchant's server would (``standardwebhooks.Webhook(secret).verify``), and can answer an error,
hold its answer until released (a slow receiver), or close its port (a receiver that is down).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from unittest import mock

import pytest
import standardwebhooks.webhooks
from flask import Flask
from sqlalchemy import select
from standardwebhooks import Webhook, WebhookVerificationError

from affiliate import delivery, outbound
from affiliate.extensions import db
from affiliate.models import Delivery, Program, User, WebhookEndpoint, utcnow
from affiliate.services import webhooks
from tests.certificates import Certificates, make_certificates

LOOPBACK = "127.0.0.1"
ROUNDS = 40  # more rounds than any test needs: a sender that never runs dry fails instead of hanging


class Clock:
    """The time the sender and the receivers read; only the test moves it.

    It starts a minute ahead of the real time, so what the test causes (at the real time) is already due.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow() + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Received:
    method: str
    path: str  # as sent, percent-encoding and query included
    headers: dict[str, str]  # names in lower case
    body: bytes
    verified: list[str]  # which of the secrets expected for the path verify the message

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


_verifying = threading.Lock()


def verifies(secret: str, body: bytes, headers: dict[str, str], at: datetime) -> bool:
    """Whether ``Webhook(secret).verify`` accepts a message on a server whose clock reads ``at``.

    The library refuses timestamps five minutes away from its own clock; the sender signs with the test's
    clock, so the receiver reads the same one.
    """

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return at.astimezone(tz)

    with _verifying, mock.patch.object(standardwebhooks.webhooks, "datetime", Frozen):
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            return False
    return True


@dataclass
class Receiver:
    """A receiver on 127.0.0.1 in a thread: plain http, or https with ``tls``.

    ``secrets`` maps a path to the signing secrets its owner verifies with; a message at such a path that none
    of them verifies is answered 401, as a merchant's server would. ``statuses`` answer the next requests, then
    ``status`` answers; a message whose id is in ``refused`` is always answered with the status it maps to (0: the
    connection is closed unanswered). While ``hold`` is an unset Event every answer waits for it (``holding`` is
    set then).
    ``stop()`` closes the port, so connections are refused; ``start()`` listens on the same port again.
    """

    tls: ssl.SSLContext | None = None
    clock: Callable[[], datetime] = utcnow
    secrets: dict[str, list[str]] = field(default_factory=dict)
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    hold: threading.Event | None = None
    hold_after: int = 0
    drop_held: bool = False
    reply: bytes = b"ok"  # the body of every answer
    holding: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        handler = type("Handler", (_Handler,), {"receiver": self})
        server = http.server.ThreadingHTTPServer((LOOPBACK, self.port), handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_port
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path.split("?")[0] == path]

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        expected = self.secrets.get(path.split("?")[0], [])
        verified = [secret for secret in expected if verifies(secret, body, headers, self.clock())]
        if self.hold is not None and not self.hold.is_set() and len(self.received) >= self.hold_after:
            self.holding.set()
            self.hold.wait(30)
            if self.drop_held:
                return 503
        self.received.append(Received(method, path, headers, body, verified))
        status = self.statuses.pop(0) if self.statuses else self.status
        status = self.refused.get(headers.get("webhook-id", ""), status)
        return 401 if expected and not verified else status


class _Handler(http.server.BaseHTTPRequestHandler):
    receiver: Receiver

    def do_GET(self) -> None:
        self.reply()

    def do_POST(self) -> None:
        self.reply()

    def reply(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status = self.receiver.answer(self.command, self.path, headers, body)
        if status == 0:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.receiver.reply)))
        self.end_headers()
        self.wfile.write(self.receiver.reply)

    def log_message(self, *args) -> None:
        return None


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("webhook-tls"), LOOPBACK)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hooks(certificates, clock, monkeypatch) -> Iterator[Receiver]:
    """A webhook receiver over https, its certificate trusted by the sender as a public CA's would be."""
    # OpenSSL reads SSL_CERT_FILE each time a default context loads its CAs: the sender's code stays as it is.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    receiver = Receiver(tls=certificates.server_context(), clock=clock).start()
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    receiver.stop()


@pytest.fixture
def tracker(clock) -> Iterator[Receiver]:
    """An affiliate's tracker receiving postbacks over plain http."""
    receiver = Receiver(clock=clock).start()
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    receiver.stop()


def one_round(app: Flask, clock: Clock) -> tuple[int, int]:
    """One round of the sender at the clock's time, as `flask send-webhooks` runs it: (delivered, failed)."""
    with app.app_context():
        try:
            return delivery.send_due(clock=clock)
        finally:
            db.session.remove()


def send_all(app: Flask, clock: Clock) -> tuple[int, int]:
    """Rounds at the clock's time until one finds nothing due; (delivered, failed) in all."""
    delivered = failed = 0
    for _ in range(ROUNDS):
        sent, missed = one_round(app, clock)
        if not sent and not missed:
            return delivered, failed
        delivered, failed = delivered + sent, failed + missed
    raise AssertionError("the sender never ran out of due deliveries")


def add_endpoint(app: Flask, program: Program, actor: User, url: str, events=(webhooks.ALL,)) -> WebhookEndpoint:
    """An endpoint added through the service, with the loopback switch the test suite's settings turn on."""
    with app.app_context():
        endpoint = webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings(url, tuple(events)),
            actor=db.session.get(User, actor.id),
            now=utcnow(),
            check_url=partial(outbound.check_url, allow_loopback=True),
        )
        db.session.commit()
        db.session.refresh(endpoint)
        db.session.expunge(endpoint)
    return endpoint


def deliveries_of(app: Flask, **owner: int) -> list[Delivery]:
    """The deliveries (of one endpoint or postback, when named), oldest first, detached."""
    with app.app_context():
        query = select(Delivery).filter_by(**owner).order_by(Delivery.id)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows
