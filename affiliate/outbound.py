"""Requests from our server to URLs someone else typed (merchant webhooks, affiliate postbacks), SSRF-safe.

The rule, in the order ``send`` applies it:

1. The URL is judged as a browser parses it (WHATWG, via ada-url): https (http only when allowed), no user
   name or password, a port that is in range and not one browsers refuse to speak HTTP to, and a host that is
   a domain name of at least two labels or an IP literal. An IP literal in any spelling (``2130706433``,
   ``0177.0.0.1``, ``0x7f.1``, ``127.1``, ``[::ffff:7f00:1]``) is normalised by the parser first, then must
   be public (``is_public``).
2. The host name is resolved exactly once and every address it resolves to must be public: the DNS answer
   belongs to whoever owns the name, so one private address among public ones refuses the destination.
3. The connection goes to a checked address, never to the name again (a second lookup could answer
   127.0.0.1: DNS rebinding). TLS still sends the name (SNI) and verifies the certificate against it.
4. Redirects are answers, not instructions: a 3xx is returned as it is.
5. Time and size are bounded: the connect timeout per address, one total deadline over the lookup, the
   TLS handshake, the answer's headers and its body (a receiver dripping one byte at a time is cut off when
   it is up), and at most ``max_answer`` bytes of body are read.

``UnsafeDestination`` means "never send there" (a permanent refusal, with a message fit for a form);
``DeliveryFailed`` means "this attempt failed" (worth a retry later). No Flask here: the delivery engine and
the forms call these functions with settings they read themselves.

Why one module: read top to bottom, the five steps above are one rule, and each part below (the address
table, the parser's checks, the pinned connections, the deadline) exists only to enforce one of them.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import ada_url

from affiliate.urls import MAX_URL_LENGTH, InvalidUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

USER_AGENT = "Clicktrail-Webhooks/1"
DEFAULT_PORTS = {"https": 443, "http": 80}
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
BODY_HEAD_BYTES = 1024
_READ_CHUNK = 16 * 1024
# Headers whose value decides where the request goes or how it is framed: send() sets them itself.
_OWN_HEADERS = frozenset({"host", "user-agent", "connection", "content-length", "transfer-encoding"})
_REFUSED_ADDRESS = "URL must not point to a private, loopback or reserved address."
_NO_ANSWER = "no answer before the deadline"
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token

# Ports the Fetch standard refuses for http(s): a request there could be read as SMTP, IRC, etc. by a
# third party's server (cross-protocol attacks), and no webhook receiver listens on them.
BLOCKED_PORTS = frozenset(
    {
        1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103,
        104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513,
        514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720,
        1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
    }
)  # fmt: skip

_v4, _v6 = ipaddress.IPv4Network, ipaddress.IPv6Network
# Spelled out rather than left to ipaddress.is_global, which calls multicast "global" and whose tables
# change between Python versions; is_global is still consulted afterwards for anything not listed here.
REFUSED_IPV4 = (
    _v4("0.0.0.0/8"),  # "this network", including the unspecified 0.0.0.0
    _v4("10.0.0.0/8"),  # private
    _v4("100.64.0.0/10"),  # carrier-grade NAT (also Alibaba Cloud's metadata service)
    _v4("127.0.0.0/8"),  # loopback
    _v4("169.254.0.0/16"),  # link-local, including the cloud metadata address 169.254.169.254
    _v4("172.16.0.0/12"),  # private
    _v4("192.0.0.0/24"),  # IETF protocol assignments (Oracle Cloud's metadata service is 192.0.0.192)
    _v4("192.0.2.0/24"),  # documentation
    _v4("192.88.99.0/24"),  # retired 6to4 relay anycast
    _v4("192.168.0.0/16"),  # private
    _v4("198.18.0.0/15"),  # benchmarking
    _v4("198.51.100.0/24"),  # documentation
    _v4("203.0.113.0/24"),  # documentation
    _v4("224.0.0.0/4"),  # multicast
    _v4("240.0.0.0/4"),  # reserved, including the broadcast 255.255.255.255
)
# IPv6 destinations must be global unicast (2000::/3), outside these parts of it. Addresses that embed
# an IPv4 address (mapped, NAT64, 6to4) are judged by the IPv4 address before this list is consulted.
GLOBAL_UNICAST_IPV6 = _v6("2000::/3")
REFUSED_IPV6 = (
    _v6("2001::/23"),  # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
    _v6("2001:db8::/32"),  # documentation
    _v6("3fff::/20"),  # documentation
)
NAT64_IPV6 = _v6("64:ff9b::/96")  # the well-known NAT64 prefix: the translator connects to the IPv4 inside
SIX_TO_FOUR_IPV6 = _v6("2002::/16")
LOOPBACK_IPV4 = _v4("127.0.0.0/8")
LOOPBACK_IPV6 = ipaddress.IPv6Address("::1")


class UnsafeDestination(InvalidUrl):
    """A destination Clicktrail will never send to; the message is safe to show in a form."""


class DeliveryFailed(Exception):
    """One attempt to send failed on the network (worth retrying later); the message is a short reason."""


@dataclass(frozen=True)
class Destination:
    """A checked destination: ``host`` is ASCII (punycode), or an IP address without brackets."""

    scheme: str
    host: str
    port: int
    path_and_query: str
    url: str


@dataclass(frozen=True)
class ReceiverResponse:
    """What a receiver answered; ``truncated`` when its body was cut (size limit, deadline or dropped)."""

    status: int
    body_head: str
    latency_ms: int
    truncated: bool


def is_public(address: IPAddress) -> bool:
    """True when ``address`` is a public unicast address an outside receiver may have."""
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in REFUSED_IPV4) and address.is_global
    if address.scope_id:  # a zone only means something on a local link
        return False
    if address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    if address in NAT64_IPV6:
        return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in SIX_TO_FOUR_IPV6 and not is_public(address.sixtofour):
        return False
    # 2000::/3 leaves out ::/96 (unspecified, loopback, IPv4-compatible), ::ffff:0:0:0/96, 64:ff9b:1::/48,
    # 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8 and everything not yet allocated.
    return (
        address in GLOBAL_UNICAST_IPV6
        and not any(address in network for network in REFUSED_IPV6)
        and address.is_global
        and not address.is_multicast
    )


def check_url(url: str, *, allow_http: bool = False, allow_loopback: bool = False) -> Destination:
    """Judge a destination URL when it is saved (no DNS lookup); raise UnsafeDestination if it may not be used.

    ``allow_http`` permits plain http; ``allow_loopback`` (tests only) permits 127.0.0.0/8, ::1 and
    ``localhost``, never a private or link-local address.
    """
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise UnsafeDestination("Enter a URL.")
    if len(text) > MAX_URL_LENGTH:
        raise UnsafeDestination(f"URL is longer than {MAX_URL_LENGTH} characters.")
    # A browser-style parser drops tabs and newlines and reads "\" as "/"; anything it would silently
    # rewrite is refused, so the URL stored is the URL the merchant meant.
    if any(_invisible(ch) for ch in text):
        raise UnsafeDestination("URL contains spaces, control characters or backslashes.")
    try:
        parsed = ada_url.URL(text)
    except ValueError:
        raise UnsafeDestination("Not a valid URL.") from None
    scheme = parsed.protocol.removesuffix(":")
    if scheme not in DEFAULT_PORTS or (scheme == "http" and not allow_http):
        raise UnsafeDestination("URL must start with https://." if not allow_http else "URL must use http or https.")
    if parsed.username or parsed.password:
        raise UnsafeDestination("URL must not contain a user name or password.")
    port = int(parsed.port) if parsed.port else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535 or port in BLOCKED_PORTS:
        raise UnsafeDestination(f"Port {port} cannot be used; use 443 or another web port.")
    if parsed.host_type == ada_url.HostType.DEFAULT and parsed.hostname.endswith("."):
        # "hooks.example.com." is the same name, and SNI and certificates name it without the dot. Set
        # through the parser: without its dots "0x7f.1.." is an IP address, which _checked_host then judges.
        try:
            parsed.hostname = parsed.hostname.rstrip(".")
        except ValueError:
            raise UnsafeDestination("Not a valid URL.") from None
    host = _checked_host(parsed, allow_loopback=allow_loopback)
    parsed.hash = ""  # never sent to the receiver
    if len(parsed.href) > MAX_URL_LENGTH:
        raise UnsafeDestination(f"URL is longer than {MAX_URL_LENGTH} characters once encoded.")
    return Destination(scheme, host, port, parsed.pathname + parsed.search, parsed.href)


def resolve(
    host: str,
    port: int,
    *,
    allow_loopback: bool = False,
    resolver: Resolver = socket.getaddrinfo,
    timeout: float | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` (from check_url) once and return its addresses; all of them must be allowed.

    An IP literal is returned without a lookup. A lookup that fails or takes longer than ``timeout``
    raises DeliveryFailed; any refused address raises UnsafeDestination for the whole destination.
    """
    literal = _ip_literal(host)
    if literal is not None:
        if not _allowed(literal, allow_loopback=allow_loopback):
            raise UnsafeDestination(_REFUSED_ADDRESS)
        return [literal]
    try:
        answers = _lookup(resolver, host, port, timeout)
    except (OSError, UnicodeError, ValueError):
        raise DeliveryFailed("could not resolve the host name") from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonical, sockaddr in answers:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except (ValueError, TypeError, IndexError):
            raise UnsafeDestination("The host name resolves to something other than an IP address.") from None
        scoped = family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]
        if family not in (socket.AF_INET, socket.AF_INET6) or scoped or not _allowed(address, allow_loopback):
            # The address itself stays out of the message: it would reveal what internal names resolve to.
            raise UnsafeDestination("The host name resolves to a private, loopback or reserved address.")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DeliveryFailed("the host name has no address")
    return addresses


def send(
    destination_url: str,
    *,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout_connect: float = 3,
    timeout_total: float = 10,
    max_answer: int = 64 * 1024,
    allow_http: bool = False,
    allow_loopback: bool = False,
    resolver: Resolver = socket.getaddrinfo,
    cafile: str | None = None,
) -> ReceiverResponse:
    """Send one request to a destination and return its answer, following no redirect.

    Raises UnsafeDestination (never retry) or DeliveryFailed (retry later). ``cafile`` replaces the system
    certificate authorities (tests); the certificate is always verified against the host name.
    """
    started = time.monotonic()
    if timeout_connect <= 0 or timeout_total <= 0 or max_answer < 0:
        raise ValueError("timeouts must be positive and max_answer not negative")
    destination = check_url(destination_url, allow_http=allow_http, allow_loopback=allow_loopback)
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(METHODS))}")
    if body is not None and not isinstance(body, bytes):
        raise TypeError("body must be bytes or None")
    request_headers = _request_headers(destination, headers)
    deadline = _Deadline(started + timeout_total)
    try:
        addresses = resolve(
            destination.host,
            destination.port,
            allow_loopback=allow_loopback,
            resolver=resolver,
            timeout=deadline.left(),
        )
        connection = _open(destination, addresses, deadline, timeout_connect, cafile)
        try:
            try:
                connection.request(method, destination.path_and_query, body=body, headers=request_headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                # Once connected, the socket's timeout is the time left: a timeout is the deadline too.
                raise _failure(exc, deadline, expired=isinstance(exc, TimeoutError)) from None
            if deadline.expired:
                # http.client ends the headers at end of input, so headers cut off by the deadline would
                # otherwise pass for a complete answer.
                raise DeliveryFailed(_NO_ANSWER)
            data, truncated = _read_body(response, max_answer, deadline)
        finally:
            connection.close()
    finally:
        deadline.stop()
    return ReceiverResponse(
        status=response.status,
        # Kept as the delivery's last response: a NUL (which PostgreSQL text refuses) would fail the write that
        # records the answer, and a delivered message would be sent again and again.
        body_head=data[:BODY_HEAD_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"),
        latency_ms=round((time.monotonic() - started) * 1000),
        truncated=truncated,
    )


def _invisible(ch: str) -> bool:
    """Whitespace, control and formatting characters, and the backslash a URL parser reads as "/"."""
    return ch == "\\" or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _allowed(address: IPAddress, allow_loopback: bool) -> bool:
    """Public, or plain loopback (127.0.0.0/8, ::1) when loopback is allowed; never mapped or scoped forms."""
    if is_public(address):
        return True
    if not allow_loopback:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in LOOPBACK_IPV4
    return address == LOOPBACK_IPV6 and not address.scope_id


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _checked_host(parsed: ada_url.URL, *, allow_loopback: bool) -> str:
    """The host of a parsed URL in the form to connect and send as SNI, or raise UnsafeDestination."""
    if parsed.host_type in (ada_url.HostType.IPV4, ada_url.HostType.IPV6):
        address = _ip_literal(parsed.hostname)
        if address is None or not _allowed(address, allow_loopback=allow_loopback):
            raise UnsafeDestination(_REFUSED_ADDRESS)
        return str(address)
    host = parsed.hostname
    if not host or not host.isascii() or _ip_literal(host) is not None:
        raise UnsafeDestination("URL must use a domain name or a public IP address.")
    if host == "localhost" or host.endswith(".localhost"):
        if allow_loopback:
            return host
        raise UnsafeDestination("URL must not point to this server (localhost).")
    labels = host.split(".")
    if len(labels) < 2 or not all(labels) or len(host) > 253 or any(len(label) > 63 for label in labels):
        raise UnsafeDestination("URL must use a full domain name, such as hooks.example.com.")
    return host


def _lookup(resolver: Resolver, host: str, port: int, timeout: float | None) -> list:
    """Call the resolver, giving up after ``timeout`` seconds (getaddrinfo itself cannot be interrupted)."""
    if timeout is None:
        return resolver(host, port, type=socket.SOCK_STREAM)
    outcome: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["answers"] = resolver(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # handed back to the caller's thread below
            outcome["error"] = exc
        finally:
            done.set()

    # A daemon thread: a lookup stuck in the system resolver finishes on its own time, not ours.
    threading.Thread(target=run, name="outbound-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise DeliveryFailed("the host name lookup timed out")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["answers"]


def _request_headers(destination: Destination, headers: dict[str, str]) -> dict[str, str]:
    own = sorted(name for name in headers if name.lower() in _OWN_HEADERS)
    if own:
        raise ValueError(f"send() sets these headers itself: {', '.join(own)}")
    # Checked before connecting (http.client would only object while sending): a CR or LF in a header
    # could start another header or another request.
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or any(ch in str(value) for ch in "\r\n\0"):
            raise ValueError(f"invalid header {name!r}")
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    if destination.port != DEFAULT_PORTS[destination.scheme]:
        host = f"{host}:{destination.port}"
    return {**headers, "Host": host, "User-Agent": USER_AGENT, "Connection": "close"}


class _Deadline:
    """The total time of one send: shuts the socket down when it is up, whatever the socket is waiting for.

    Socket timeouts bound each read, not their sum: a receiver sending one byte a second keeps every
    read short and the request open for ever. Shutting the socket down from a timer ends any of them.
    """

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is None:
            return
        # The plain socket's shutdown, also for a TLS socket: it wakes a blocked read at once without
        # touching the TLS state the reading thread is using. OSError: the socket is already closed.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, whatever the host name would resolve to now."""

    def __init__(self, host: str, port: int, *, address: IPAddress, deadline: _Deadline, connect_timeout: float):
        super().__init__(host, port, timeout=connect_timeout)
        self.address = address
        self.deadline = deadline

    def connect(self) -> None:
        sock = socket.create_connection((str(self.address), self.port), min(self.timeout, self.deadline.left()))
        self.deadline.watch(sock)
        sock.settimeout(max(self.deadline.left(), 0.01))  # 0 would make the socket non-blocking
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.secure(sock)

    def secure(self, sock: socket.socket) -> socket.socket:
        return sock


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The same over TLS: SNI and certificate verification use the host name, not the address."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.tls = tls

    def secure(self, sock: socket.socket) -> socket.socket:
        # The handshake runs after the deadline watches the TLS socket, so a stalled handshake is cut too.
        wrapped = self.tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self.deadline.watch(wrapped)
        wrapped.do_handshake()
        return wrapped


def _open(
    destination: Destination,
    addresses: list[IPAddress],
    deadline: _Deadline,
    connect_timeout: float,
    cafile: str | None,
) -> _PinnedHTTPConnection:
    """Connect to the first checked address that answers, and finish the TLS handshake on it."""
    tls = ssl.create_default_context(cafile=cafile) if destination.scheme == "https" else None
    failure: BaseException | None = None
    for address in addresses:
        if deadline.left() <= 0:
            break
        options = {"address": address, "deadline": deadline, "connect_timeout": connect_timeout}
        if tls is None:
            connection = _PinnedHTTPConnection(destination.host, destination.port, **options)
        else:
            connection = _PinnedHTTPSConnection(destination.host, destination.port, tls=tls, **options)
        try:
            connection.connect()
        except ssl.SSLError as exc:
            # The receiver answered and TLS failed: another address of the same name would not do better.
            connection.close()
            raise _failure(exc, deadline) from None
        except OSError as exc:
            connection.close()
            failure = exc
            continue
        return connection
    raise _failure(failure or TimeoutError(), deadline)


def _read_body(response: http.client.HTTPResponse, limit: int, deadline: _Deadline) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of the body before the deadline; say whether any was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if deadline.left() <= 0:
            return b"".join(chunks), True
        try:
            chunk = response.read1(min(_READ_CHUNK, limit + 1 - size))
        except (OSError, http.client.HTTPException):
            # The status has arrived, so the delivery has an answer; only its body is cut short.
            return b"".join(chunks), True
        if not chunk:
            cut = response.length > 0 if response.length is not None else deadline.expired
            return b"".join(chunks), cut
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def _failure(exc: BaseException, deadline: _Deadline, *, expired: bool = False) -> DeliveryFailed:
    """A short, stable reason for a failed attempt (the delivery log shows it to the merchant)."""
    if expired or deadline.expired:
        return DeliveryFailed(_NO_ANSWER)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryFailed(f"TLS certificate not accepted: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return DeliveryFailed("TLS handshake failed")
    if isinstance(exc, TimeoutError):
        return DeliveryFailed("timed out")
    if isinstance(exc, ConnectionRefusedError):
        return DeliveryFailed("connection refused")
    if isinstance(exc, ConnectionError):
        return DeliveryFailed("connection closed by the receiver")
    if isinstance(exc, http.client.HTTPException):
        return DeliveryFailed("the answer was not valid HTTP")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return DeliveryFailed(f"network error: {reason}")
