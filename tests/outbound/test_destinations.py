"""Hostile destinations are refused when saved (check_url) and when sent (send); good ones pass.

Every send() here runs with socket.create_connection recorded and refused, so "reached" is measured, not
assumed: hostile destinations must produce no connection attempt at all, good ones exactly the checked one.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from urllib.parse import quote

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affiliate.outbound import (
    REFUSED_IPV4,
    DeliveryFailed,
    Destination,
    UnsafeDestination,
    check_url,
    is_public,
    resolve,
    send,
)
from config import ProductionConfig, TestingConfig
from tests.outbound import PUBLIC_V4, PUBLIC_V6, StubResolver, record_connections

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)

# Addresses of every refused range; each is also tried as a URL literal and as a DNS answer.
REFUSED_ADDRESSES = [
    "0.0.0.0", "0.1.2.3",  # noqa: S104 - unspecified and "this network" are what is being refused
    "10.0.0.1", "10.255.255.255",  # private
    "100.64.0.1", "100.127.255.254", "100.100.100.200",  # CGNAT (and Alibaba Cloud metadata)
    "127.0.0.1", "127.255.255.254",  # loopback
    "169.254.169.254", "169.254.0.1",  # link-local, cloud metadata
    "172.16.0.1", "172.31.255.255",  # private
    "192.0.0.1", "192.0.0.192",  # IETF protocol assignments (Oracle Cloud metadata)
    "192.0.2.1", "198.51.100.7", "203.0.113.9",  # documentation
    "192.88.99.1",  # retired 6to4 relays
    "192.168.0.1", "192.168.255.254",  # private
    "198.18.0.1", "198.19.255.255",  # benchmarking
    "224.0.0.1", "239.255.255.250",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "::", "::1",  # unspecified, loopback
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",  # IPv4-mapped
    "::127.0.0.1", "::10.0.0.1", "::93.184.216.34",  # IPv4-compatible (deprecated: all refused)
    "::ffff:0:127.0.0.1",  # IPv4-translated
    "64:ff9b::127.0.0.1", "64:ff9b::10.0.0.1", "64:ff9b::a9fe:a9fe",  # NAT64 of refused IPv4
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:c0a8:101::1", "2002:a00:1::",  # 6to4 of refused IPv4
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:a00:1::1",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:db8::1", "2001:db8:ffff::1", "3fff::1",  # documentation
    "fc00::1", "fd00::1", "fd00:ec2::254",  # unique local (AWS IPv6 metadata)
    "fe80::1", "febf::1",  # link-local
    "fec0::1",  # site-local
    "ff02::1", "ff0e::1",  # multicast
    "100::1",  # discard-only
    "5f00::1", "4000::1",  # outside global unicast
]  # fmt: skip

# The same few addresses in every spelling a URL parser accepts.
IP_SPELLINGS = [
    "2130706433", "017700000001", "0x7f000001", "0X7F000001",  # 127.0.0.1 as one number
    "0177.0.0.1", "0x7f.0.0.1", "0x7f.1", "127.1", "127.0.1", "0177.1", "0x7F.0X0.0.01",  # parts, short forms
    "127.0.0.1.", "127.0.0.1..", "0x7f.1..",  # trailing dots
    "0", "0x0", "0.0",  # 0.0.0.0
    "2852039166", "0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518",  # metadata
    "167772161", "0xa.1", "012.0.0.1", "10.1",  # 10.0.0.1
    "3232235521", "0xc0.0xa8.0.1", "192.168.1",  # 192.168.0.1
    "127\u30020\u30020\u30021", "127\uff0e0\uff0e0\uff0e1", "127\uff610\uff610\uff611",  # unicode full stops
    "\uff11\uff12\uff17.0.0.1", "\uff10\uff58\uff17\uff46.1",  # full-width digits, "0x7f"
    "%31%32%37.0.0.1", "127%2e0%2e0%2e1", "%30x7f.1", "%32130706433",  # percent-encoded
    "[::1]", "[0:0:0:0:0:0:0:1]", "[0000::0001]", "[::0.0.0.1]",  # ::1
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:7f00:1]", "[::FFFF:7F00:1]",  # mapped 127.0.0.1
    "[::ffff:a9fe:a9fe]", "[::ffff:169.254.169.254]",  # mapped metadata
    "[::]", "[0::0]", "[::0.0.0.0]",  # unspecified
    "[fe80::1]", "[FE80::1]",
]  # fmt: skip

# Zone ids: a WHATWG parser refuses them outright; whatever it does, they never pass.
ZONED = ["[fe80::1%25eth0]", "[fe80::1%eth0]", "[::1%25lo]", "[fe80::1%251]"]

OTHER_HOSTILE = [
    "http://hooks.example.com/",  # plain http where not allowed
    "HTTP://hooks.example.com/",
    "file:///etc/passwd",
    "file://hooks.example.com/etc/passwd",
    "gopher://hooks.example.com:70/_GET%20/",
    "ftp://hooks.example.com/",
    "dict://hooks.example.com:11211/stats",
    "ldap://hooks.example.com/",
    "ws://hooks.example.com/",
    "wss://hooks.example.com/",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "hooks.example.com/path",  # no scheme
    "//hooks.example.com/",
    "https://",
    "https:///path",
    "",
    "   ",
    "https://localhost/",
    "https://localhost./",
    "https://LOCALHOST/",
    "https://LocalHost:8443/hook",
    "https://localhost../",
    "https://api.localhost/",
    "https://metadata/computeMetadata/v1/",  # single-label names resolve through search domains
    "https://intranet/",
    "https://user:pass@hooks.example.com/",
    "https://user@hooks.example.com/",
    "https://:secret@hooks.example.com/",
    "https://evil.com@127.0.0.1/",
    "https://hooks.example.com@169.254.169.254/",
    "https://127.0.0.1#@hooks.example.com/",
    "https://127.0.0.1?@hooks.example.com/",
    "https://hooks.example.com:0/",
    "https://hooks.example.com:65536/",
    "https://hooks.example.com:99999/",
    "https://hooks.example.com:-1/",
    "https://hooks.example.com:4294967739/",  # 443 + 2**32
    "https://hooks.example.com:25/",  # SMTP: cross-protocol
    "https://hooks.example.com:22/",
    "https://hooks.example.com:6667/",
    "https://hooks.example.com\\@127.0.0.1/",  # backslashes: a parser reads them as "/"
    "https:\\\\127.0.0.1\\",
    "https://127.0.0.1\\.hooks.example.com/",
    "https://hooks.example.com\\.127.0.0.1/",
    "https:/\\127.0.0.1/",
    "https://hooks.example.com/" + "a" * 2100,  # very long
    "https://" + "a" * 64 + ".example.com/",  # label longer than DNS allows
    "https://" + ".".join(["a" * 60] * 5) + ".com/",  # name longer than DNS allows
    "https://hooks..example.com/",
    "https://.example.com/",
    "https://hooks.example.com\x00.evil.test/",  # NUL bytes
    "https://127.0.0.1\x00.hooks.example.com/",
    "https://hooks.example.com/\x00",
    "https://hooks.example.com /",  # whitespace, which a parser would silently drop
    "https://hooks\t.example.com/",
    "https://127.0.0.1\n/",
    "https://127.0.\r\n0.1/",
    "https://hooks.example.com\u00a0/",
    "https://127.0.0.1\u3000/",
    "https://127.0.0\u200b.1/",  # zero-width space
    "https://127.0\u00ad.0.1/",  # soft hyphen, which IDNA deletes
    "https://\u202ehooks.example.com/",  # right-to-left override
    "https://[::1/",
    "https://hooks.example.com:443:443/",
]

HOSTILE_AT_SAVE_TIME = (
    [f"https://{address}/" if ":" not in address else f"https://[{address}]/" for address in REFUSED_ADDRESSES]
    + [f"https://{host}/hook" for host in IP_SPELLINGS + ZONED]
    + OTHER_HOSTILE
)

# Names that look harmless until they are resolved: refused at send time, before any connection.
HOSTILE_DNS = [
    ("https://127.0.0.1.nip.io/", ["127.0.0.1"]),
    ("https://10.0.0.1.sslip.io/", ["10.0.0.1"]),
    ("https://a9fea9fe.rbndr.us/", ["169.254.169.254"]),
    ("https://metadata.google.internal/", ["169.254.169.254"]),
    ("https://localtest.me/", ["127.0.0.1", "::1"]),
    ("https://mixed.example.com/", [PUBLIC_V4, "10.0.0.5"]),  # one public, one private
    ("https://mixed.example.com/", ["10.0.0.5", PUBLIC_V4]),
    ("https://mixed6.example.com/", [PUBLIC_V6, "fd00::1"]),
    ("https://mapped.example.com/", [PUBLIC_V4, "::ffff:192.168.1.1"]),
    ("https://nat64.example.com/", ["64:ff9b::a9fe:a9fe"]),
    ("https://zoned.example.com/", ["fe80::1%eth0"]),
    ("https://zero.example.com/", ["0.0.0.0"]),  # noqa: S104 - a DNS answer to refuse, not a bind
    ("https://any6.example.com/", ["::"]),
    ("https://cgnat.example.com/", ["100.64.0.1"]),
    *((f"https://rebound-{index}.example.com/", [address]) for index, address in enumerate(REFUSED_ADDRESSES)),
]

GOOD = [
    # (url, allow_http, resolver answer, normalised destination)
    (
        "https://hooks.example.com/clicktrail",
        False,
        [PUBLIC_V4],
        Destination("https", "hooks.example.com", 443, "/clicktrail", "https://hooks.example.com/clicktrail"),
    ),
    (
        "https://HOOKS.Example.COM./in?a=1&b=2#frag",
        False,
        [PUBLIC_V4, PUBLIC_V6],
        Destination("https", "hooks.example.com", 443, "/in?a=1&b=2", "https://hooks.example.com/in?a=1&b=2"),
    ),
    (
        "https://hooks.example.com:8443/in",
        False,
        [PUBLIC_V6],
        Destination("https", "hooks.example.com", 8443, "/in", "https://hooks.example.com:8443/in"),
    ),
    (
        "https://b\u00fccher.example/postback?c={click}",
        False,
        [PUBLIC_V4],
        Destination(
            "https",
            "xn--bcher-kva.example",
            443,
            "/postback?c={click}",
            "https://xn--bcher-kva.example/postback?c={click}",
        ),
    ),
    (
        "http://hooks.example.com/",
        True,
        [PUBLIC_V4],
        Destination("http", "hooks.example.com", 80, "/", "http://hooks.example.com/"),
    ),
    (
        "  https://hooks.example.com/  ",
        False,
        [PUBLIC_V4],
        Destination("https", "hooks.example.com", 443, "/", "https://hooks.example.com/"),
    ),
    (
        "https://93.184.216.34/hook",
        False,
        [],
        Destination("https", PUBLIC_V4, 443, "/hook", "https://93.184.216.34/hook"),
    ),
    (
        "https://1572395042/hook",
        False,
        [],  # 93.184.216.34 as one number: public in any spelling
        Destination("https", PUBLIC_V4, 443, "/hook", "https://93.184.216.34/hook"),
    ),
    (
        f"https://[{PUBLIC_V6}]:8443/",
        False,
        [],
        Destination("https", PUBLIC_V6, 8443, "/", f"https://[{PUBLIC_V6}]:8443/"),
    ),
    (
        "https://[64:ff9b::5db8:d822]/",
        False,
        [],  # NAT64 of a public IPv4
        Destination("https", "64:ff9b::5db8:d822", 443, "/", "https://[64:ff9b::5db8:d822]/"),
    ),
    (
        "https://[2002:5db8:d822::1]/",
        False,
        [],  # 6to4 of a public IPv4
        Destination("https", "2002:5db8:d822::1", 443, "/", "https://[2002:5db8:d822::1]/"),
    ),
]


@pytest.fixture
def attempts(monkeypatch) -> list[tuple[str, int]]:
    return record_connections(monkeypatch, refuse=True)


@pytest.mark.parametrize("url", HOSTILE_AT_SAVE_TIME)
def test_hostile_destination_is_refused_when_saved_and_when_sent(url, attempts):
    with pytest.raises(UnsafeDestination) as refused:
        check_url(url)
    assert refused.value.args[0] and len(refused.value.args[0]) < 120  # a sentence for the form
    resolver = StubResolver([PUBLIC_V4])
    with pytest.raises(UnsafeDestination):
        send(url, method="POST", body=b"{}", headers={}, resolver=resolver)
    assert resolver.calls == []
    assert attempts == []


@pytest.mark.parametrize(("url", "answer"), HOSTILE_DNS)
def test_name_resolving_to_a_refused_address_is_never_reached(url, answer, attempts):
    destination = check_url(url)  # nothing to see before the lookup
    with pytest.raises(UnsafeDestination, match="resolves to a private"):
        resolve(destination.host, destination.port, resolver=StubResolver(answer))
    resolver = StubResolver(answer)
    with pytest.raises(UnsafeDestination) as refused:
        send(url, method="POST", body=b"{}", headers={}, resolver=resolver)
    assert resolver.calls == [(destination.host, 443)]
    assert attempts == []
    for address in answer:  # the message does not tell the merchant what our DNS says
        assert address.split("%")[0] not in str(refused.value)


@pytest.mark.parametrize(("url", "allow_http", "answer", "expected"), GOOD)
def test_good_destination_passes_and_is_reached_at_its_checked_address(url, allow_http, answer, expected, attempts):
    assert check_url(url, allow_http=allow_http) == expected
    resolver = StubResolver(answer)
    addresses = resolve(expected.host, expected.port, resolver=resolver)
    assert [str(address) for address in addresses] == (answer or [expected.host])
    with pytest.raises(DeliveryFailed, match="connection refused"):  # the test refuses every connection
        send(url, method="POST", body=b"{}", headers={}, allow_http=allow_http, resolver=StubResolver(answer))
    assert attempts == [(str(address), expected.port) for address in addresses]


def test_plain_http_only_when_allowed():
    with pytest.raises(UnsafeDestination, match="https"):
        check_url("http://hooks.example.com/")
    assert check_url("http://hooks.example.com/", allow_http=True).scheme == "http"
    with pytest.raises(UnsafeDestination):
        check_url("ftp://hooks.example.com/", allow_http=True)


LOOPBACK_ALLOWED = ["http://127.0.0.1:8080/", "http://127.0.0.2/", "http://[::1]:9000/", "http://2130706433/"]
STILL_REFUSED_WITH_LOOPBACK = [
    "http://10.0.0.1/", "http://169.254.169.254/", "http://0.0.0.0/", "http://[::]/", "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::1]/", "http://192.168.1.1/",
]  # fmt: skip


@pytest.mark.parametrize("url", LOOPBACK_ALLOWED)
def test_allow_loopback_lets_tests_use_this_machine(url):
    with pytest.raises(UnsafeDestination):
        check_url(url, allow_http=True)
    assert check_url(url, allow_http=True, allow_loopback=True).port in (80, 8080, 9000)


@pytest.mark.parametrize("url", STILL_REFUSED_WITH_LOOPBACK)
def test_allow_loopback_allows_nothing_else(url, attempts):
    with pytest.raises(UnsafeDestination):
        check_url(url, allow_http=True, allow_loopback=True)
    with pytest.raises(UnsafeDestination):
        send(url, method="GET", body=None, headers={}, allow_http=True, allow_loopback=True)
    assert attempts == []


def test_localhost_with_allow_loopback_must_still_resolve_to_loopback():
    destination = check_url("http://localhost:8080/", allow_http=True, allow_loopback=True)
    assert [str(a) for a in resolve(destination.host, 8080, allow_loopback=True, resolver=StubResolver(["::1"]))] == [
        "::1"
    ]
    for answer in (["10.0.0.1"], ["127.0.0.1", "169.254.169.254"], ["::ffff:127.0.0.1"]):
        with pytest.raises(UnsafeDestination):
            resolve(destination.host, 8080, allow_loopback=True, resolver=StubResolver(answer))


def test_answers_bound_to_an_interface_or_not_internet_addresses_are_refused():
    scoped = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC_V6, 443, 0, 3))
    unix = (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", ("/run/docker.sock",))
    for entry in (scoped, unix):
        with pytest.raises(UnsafeDestination):
            resolve("hooks.example.com", 443, resolver=lambda *args, entry=entry, **kwargs: [entry])


def test_lookup_failures_are_delivery_failures_not_refusals():
    def broken(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(DeliveryFailed, match="could not resolve"):
        resolve("hooks.example.com", 443, resolver=broken)
    with pytest.raises(DeliveryFailed, match="no address"):
        resolve("hooks.example.com", 443, resolver=StubResolver([]))


def test_a_stuck_lookup_ends_at_the_deadline():
    released = threading.Event()

    def stuck(*args, **kwargs):
        released.wait(30)  # a resolver that answers only once the test is over
        return []

    try:
        with pytest.raises(DeliveryFailed, match="timed out"):
            resolve("hooks.example.com", 443, resolver=stuck, timeout=0.1)
    finally:
        released.set()


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_is_public_refuses_every_listed_range(address):
    assert is_public(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_V4,
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.1",
        "192.167.255.255",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        PUBLIC_V6,
        "2001:4860:4860::8888",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ],
)
def test_is_public_accepts_public_unicast(address):
    assert is_public(ipaddress.ip_address(address)) is True


def test_is_public_refuses_a_scoped_address():
    assert is_public(ipaddress.IPv6Address(f"{PUBLIC_V6}%eth0")) is False


def test_headers_that_decide_routing_or_framing_are_ours_and_none_splits_lines(attempts):
    for name in ("Host", "host", "Content-Length", "Transfer-Encoding", "Connection", "User-Agent"):
        with pytest.raises(ValueError, match=name):
            send("https://93.184.216.34/", method="POST", body=b"", headers={name: "127.0.0.1"})
    for name, value in (("X-Id", "1\r\nHost: 127.0.0.1"), ("X-Id", "1\n"), ("X-Id", "1\x00"), ("X Id", "1"), ("", "1")):
        with pytest.raises(ValueError, match="invalid header"):
            send("https://93.184.216.34/", method="POST", body=b"", headers={name: value})
    assert attempts == []


def test_production_refuses_to_start_with_loopback_allowed():
    assert TestingConfig.OUTBOUND_ALLOW_LOOPBACK is True
    with pytest.raises(SystemExit, match="OUTBOUND_ALLOW_LOOPBACK"):
        ProductionConfig.resolve({"OUTBOUND_ALLOW_LOOPBACK": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": "x"})


# Generated spellings: an address from a refused IPv4 range, written the way a URL parser still reads it.
_FULL_WIDTH = {**{str(d): chr(0xFF10 + d) for d in range(10)}, "x": "\uff58", "X": "\uff38", ".": "\u3002"}


def _spell_part(value: int, style: str) -> str:
    if style == "octal":
        return "0" + format(value, "o")
    if style == "hex":
        return "0x" + format(value, "x")
    return str(value)


@st.composite
def refused_ipv4_spellings(draw) -> tuple[str, ipaddress.IPv4Address]:
    network = draw(st.sampled_from(REFUSED_IPV4))
    value = draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    octets = list(value.to_bytes(4, "big"))
    # a.b.c.d, a.b.c (c is 16 bits), a.b (b is 24 bits) or one 32-bit number
    count = draw(st.sampled_from([4, 3, 2, 1]))
    parts = [*octets[: count - 1], int.from_bytes(bytes(octets[count - 1 :]), "big")]
    host = ".".join(_spell_part(part, draw(st.sampled_from(["decimal", "octal", "hex"]))) for part in parts)
    host += draw(st.sampled_from(["", ".", ".."]))
    # Each character as itself, percent-encoded, or full width: a parser maps all of them back.
    disguise = draw(st.lists(st.sampled_from(["plain", "percent", "wide"]), min_size=len(host), max_size=len(host)))
    host = "".join(
        quote(ch, safe="") if how == "percent" else _FULL_WIDTH.get(ch, ch) if how == "wide" else ch
        for ch, how in zip(host, disguise, strict=True)
    )
    return host, ipaddress.IPv4Address(value)


@FUZZ
@given(refused_ipv4_spellings(), st.sampled_from(["{}", "[::ffff:{}]", "[::{}]", "[64:ff9b::{}]"]))
def test_any_spelling_of_a_refused_ipv4_is_refused(spelling, wrapper):
    host, address = spelling
    url = f"https://{host}/hook" if wrapper == "{}" else f"https://{wrapper.format(address)}/hook"
    with pytest.raises(UnsafeDestination):
        check_url(url)
    if wrapper == "{}":
        # The oracle: a browser's parser reads the spelling as that very address (so the refusal is no accident).
        without_dots = ada_url.URL(url).hostname.rstrip(".")
        assert ada_url.URL(f"https://{without_dots}/").hostname == str(address)


URLISH = st.one_of(
    st.text(max_size=80),
    st.builds(lambda a, b: f"https://{a}/{b}", st.text(max_size=40), st.text(max_size=20)),
    st.builds(
        lambda a, b: f"https://{a}{b}",
        st.sampled_from(["127.0.0.1", "0x7f.1", "[::1]", "hooks.example.com", "10.1", "localhost", "[::ffff:a00:1]"]),
        st.text(alphabet="@:./\\%#?[]0123456789abcdefx\t\n\u3002", max_size=30),
    ),
)


@FUZZ
@given(URLISH)
def test_check_url_never_returns_a_refused_literal_and_is_idempotent(text):
    try:
        destination = check_url(text)
    except UnsafeDestination:
        return
    parsed = ada_url.URL(destination.url)
    assert parsed.protocol == "https:" and not parsed.username and not parsed.password
    literal = parsed.hostname.strip("[]")
    if parsed.host_type != ada_url.HostType.DEFAULT:
        assert is_public(ipaddress.ip_address(literal))
    else:
        assert literal not in ("localhost",) and "." in literal
    assert check_url(destination.url) == destination
