"""send() against real receivers on loopback: answers, redirects, deadlines, size limits, TLS, DNS rebinding."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from affiliate.outbound import USER_AGENT, DeliveryFailed, UnsafeDestination, send
from tests.certificates import Certificates, make_certificates
from tests.outbound import PUBLIC_V4, StubResolver, record_connections

HOOK_HOST = "hooks.example.test"
BIG = 200 * 1024
LIMIT = 64 * 1024


@dataclass
class Seen:
    """What a receiver saw: every accepted connection, every request, the TLS server names asked for."""

    connections: int = 0
    requests: list[dict] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path; the slow ones stop as soon as the client has gone."""

    protocol_version = "HTTP/1.1"
    seen: Seen

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        # A client that gave up (as it should, on the slow paths) ends the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            getattr(self, "path_" + self.path.strip("/").replace("-", "_"))()

    def path_ok(self) -> None:
        self.reply(200, b"thanks \xe2\x9c\x93")

    def path_redirect(self) -> None:
        self.send_response(302)
        self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def path_big(self) -> None:
        self.reply(200, b"x" * BIG)

    def path_exact(self) -> None:
        self.reply(200, b"y" * LIMIT)

    def path_big_unsized(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"z" * BIG)
        self.close_connection = True

    def path_drip(self) -> None:
        """Headers at once, then one byte every 20 ms of a body that would take 20 s."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        self.drip(b"d" * 1000)

    def path_drip_headers(self) -> None:
        """The status line, then headers one byte at a time: every read is short, the whole never ends."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.drip(b"X-Padding: " + b"p" * 1000)

    def path_silent(self) -> None:
        self.connection.settimeout(5)
        self.connection.recv(1)  # until the client hangs up

    def drip(self, data: bytes) -> None:
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.02)

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return None


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 in a thread, plain or TLS; counts connections as they are accepted."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen = Seen()
        handler = type("BoundHandler", (Handler,), {"seen": self.seen})
        super().__init__(("127.0.0.1", 0), handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.seen.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = self.server_port
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def verify_request(self, request, client_address) -> bool:
        self.seen.connections += 1
        return True

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("outbound-tls"), HOOK_HOST)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def tls_receiver(certificates) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.chain, certificates.key)
    server = Receiver(context)
    yield server
    server.stop()


def local(receiver: Receiver, path: str, **options):
    """send() to a plain-http receiver on 127.0.0.1, as the test suite's loopback switch allows."""
    options = {"method": "POST", "body": b"{}", "headers": {}, "allow_http": True, "allow_loopback": True} | options
    return send(f"http://127.0.0.1:{receiver.port}{path}", **options)


def test_a_200_answer_and_its_body_head(receiver):
    answer = local(
        receiver,
        "/ok",
        body=b'{"event":"conversion.approved"}',
        headers={"Content-Type": "application/json", "Clicktrail-Signature": "t=1,v1=abc"},
    )
    assert (answer.status, answer.body_head, answer.truncated) == (200, "thanks \u2713", False)
    assert 0 <= answer.latency_ms < 2000
    [request] = receiver.seen.requests
    assert (request["method"], request["path"], request["body"]) == ("POST", "/ok", b'{"event":"conversion.approved"}')
    headers = request["headers"]
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert (headers["Content-Type"], headers["Clicktrail-Signature"]) == ("application/json", "t=1,v1=abc")


def test_a_redirect_is_returned_not_followed(receiver):
    answer = local(receiver, "/redirect")
    assert answer.status == 302
    assert [request["path"] for request in receiver.seen.requests] == ["/redirect"]


def test_a_slow_drip_body_is_cut_at_the_total_deadline(receiver):
    started = time.monotonic()
    answer = local(receiver, "/drip", timeout_total=0.5)
    elapsed = time.monotonic() - started
    assert (answer.status, answer.truncated) == (200, True)
    assert len(answer.body_head) < 100 and set(answer.body_head) <= {"d"}  # the whole body would take 20 s
    assert 0.45 <= elapsed < 1.5
    assert 450 <= answer.latency_ms < 1500


def test_headers_dripped_one_byte_at_a_time_fail_at_the_total_deadline(receiver):
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="deadline"):
        local(receiver, "/drip-headers", timeout_total=0.5)
    assert 0.45 <= time.monotonic() - started < 1.5


def test_a_receiver_that_never_answers_fails_at_the_total_deadline(receiver):
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="deadline"):
        local(receiver, "/silent", timeout_total=0.4)
    assert 0.35 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize(("path", "truncated"), [("/big", True), ("/big-unsized", True), ("/exact", False)])
def test_an_answer_over_64_kb_is_truncated(receiver, path, truncated):
    answer = local(receiver, path)
    assert (answer.status, answer.truncated) == (200, truncated)
    assert len(answer.body_head) == 1024


def test_max_answer_is_the_limit(receiver):
    assert local(receiver, "/ok", max_answer=6).truncated is True
    assert local(receiver, "/ok", max_answer=10).truncated is False


def test_a_closed_port_is_a_delivery_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryFailed, match="connection refused"):
        send(f"http://127.0.0.1:{port}/", method="POST", body=b"", headers={}, allow_http=True, allow_loopback=True)


def test_https_uses_the_host_name_for_sni_certificate_and_host_header(tls_receiver, certificates):
    resolver = StubResolver(["127.0.0.1"])
    answer = send(
        f"https://{HOOK_HOST}:{tls_receiver.port}/ok",
        method="POST",
        body=b"{}",
        headers={},
        allow_loopback=True,
        resolver=resolver,
        cafile=str(certificates.ca),
    )
    assert answer.status == 200
    assert resolver.calls == [(HOOK_HOST, tls_receiver.port)]
    assert tls_receiver.seen.server_names == [HOOK_HOST]
    assert tls_receiver.seen.requests[0]["headers"]["Host"] == f"{HOOK_HOST}:{tls_receiver.port}"


@pytest.mark.parametrize(
    ("host", "trusted"), [("other.example.test", True), (HOOK_HOST, False)], ids=["wrong-name", "unknown-ca"]
)
def test_https_refuses_a_certificate_not_valid_for_the_host(tls_receiver, certificates, host, trusted):
    with pytest.raises(DeliveryFailed, match="TLS certificate not accepted"):
        send(
            f"https://{host}:{tls_receiver.port}/ok",
            method="POST",
            body=b"{}",
            headers={},
            allow_loopback=True,
            resolver=StubResolver(["127.0.0.1"]),
            cafile=str(certificates.ca) if trusted else None,
        )
    assert tls_receiver.seen.requests == []


def test_dns_rebinding_the_checked_public_address_is_the_one_connected_to(monkeypatch):
    attempts = record_connections(monkeypatch, refuse=True)  # nothing may leave this machine
    resolver = StubResolver([PUBLIC_V4], ["127.0.0.1"])
    with pytest.raises(DeliveryFailed):
        send("https://rebind.example.test/hook", method="POST", body=b"{}", headers={}, resolver=resolver)
    assert resolver.calls == [("rebind.example.test", 443)]
    assert attempts == [(PUBLIC_V4, 443)]


def test_dns_rebinding_a_second_answer_is_never_asked_for(receiver, monkeypatch):
    attempts = record_connections(monkeypatch, refuse=False)
    # Nothing listens on 127.0.0.2: a second lookup would send the request there and fail.
    resolver = StubResolver(["127.0.0.1"], ["127.0.0.2"])
    answer = send(
        f"http://rebind.example.test:{receiver.port}/ok",
        method="POST",
        body=b"{}",
        headers={},
        allow_http=True,
        allow_loopback=True,
        resolver=resolver,
    )
    assert answer.status == 200
    assert len(resolver.calls) == 1
    assert attempts == [("127.0.0.1", receiver.port)]
    assert receiver.seen.requests[0]["headers"]["Host"] == f"rebind.example.test:{receiver.port}"


def test_a_name_answering_loopback_is_refused_without_the_switch(receiver):
    resolver = StubResolver(["127.0.0.1"])
    with pytest.raises(UnsafeDestination):
        send(
            f"http://rebind.example.test:{receiver.port}/ok",
            method="POST",
            body=b"{}",
            headers={},
            allow_http=True,
            resolver=resolver,
        )
    assert len(resolver.calls) == 1
    local(receiver, "/ok")  # the control: a connection that is allowed is counted
    assert receiver.seen.connections == 1


def test_a_loopback_receiver_is_refused_before_any_connection(receiver):
    for url in (f"http://127.0.0.1:{receiver.port}/ok", f"http://[::ffff:127.0.0.1]:{receiver.port}/ok"):
        with pytest.raises(UnsafeDestination):
            send(url, method="POST", body=b"{}", headers={}, allow_http=True)
    # Connections are accepted in order: had a refused send connected, it would be counted before this one.
    local(receiver, "/ok")
    assert receiver.seen.connections == 1
    assert [request["path"] for request in receiver.seen.requests] == ["/ok"]


def test_the_next_checked_address_is_tried_when_one_refuses(receiver, monkeypatch):
    attempts = record_connections(monkeypatch, refuse=False)
    resolver = StubResolver(["127.0.0.2", "127.0.0.1"])
    answer = send(
        f"http://two.example.test:{receiver.port}/ok",
        method="GET",
        body=None,
        headers={},
        allow_http=True,
        allow_loopback=True,
        resolver=resolver,
    )
    assert answer.status == 200
    assert attempts == [("127.0.0.2", receiver.port), ("127.0.0.1", receiver.port)]
