"""URL rules: merchant destinations, allowlisted hosts and the login next= target."""

from __future__ import annotations

import itertools
from urllib.parse import quote

import ada_url
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from affiliate.urls import (
    InvalidUrl,
    destination_allowed,
    host_of,
    normalise_host,
    parse_destination,
    parse_host_list,
    safe_next,
    url_host,
)

BASE = "https://clicktrail.test/"
BASES = (BASE, "http://localhost/", "https://clicktrail.test:8443/")
CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}
FAST = settings(max_examples=300, deadline=None)
CYRILLIC_APPLE = "\u0430\u0440\u0440\u04cf\u0435.com"  # looks like apple.com; punycode xn--80ak6aa92e.com


def escapes_origin(value: str | None, base: str) -> bool:
    """Judge a safe_next answer as a browser would: anything but a same-origin path escapes."""
    if value is None:
        return False
    if not value.startswith("/") or value.startswith(("//", "/\\")) or CONTROL & set(value):
        return True
    try:
        return ada_url.URL(value, base).origin != ada_url.URL(base).origin
    except ValueError:
        return True


def is_acceptable_destination(value: str) -> bool:
    url = ada_url.URL(value)
    return (
        url.href == value
        and url.protocol == "https:"
        and not url.username
        and not url.password
        and url.host_type == ada_url.HostType.DEFAULT
        and "." in url.hostname.strip(".")
        and not (CONTROL | {" ", "\\"}) & set(value)
    )


# parse_destination


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://shop.example.com/item?id=1#reviews", "https://shop.example.com/item?id=1#reviews"),
        ("HTTPS://SHOP.Example.COM/Item", "https://shop.example.com/Item"),
        ("https://shop.example.com:443/", "https://shop.example.com/"),
        ("https://shop.example.com", "https://shop.example.com/"),
        ("  https://shop.example.com/  ", "https://shop.example.com/"),
        ("https://shop.example.com:8443/cart", "https://shop.example.com:8443/cart"),
        ("https://bücher.de/katalog", "https://xn--bcher-kva.de/katalog"),
        ("https://shop.example.com/a/../b", "https://shop.example.com/b"),
    ],
)
def test_destination_is_normalised(text, expected):
    assert parse_destination(text) == expected


LONG_PREFIX = "https://shop.example.com/"


def test_destination_of_exactly_2048_characters_is_accepted():
    text = LONG_PREFIX + "a" * (2048 - len(LONG_PREFIX))
    assert parse_destination(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        LONG_PREFIX + "a" * (2049 - len(LONG_PREFIX)),
        "http://shop.example.com/",
        "HTTP://shop.example.com/",
        "javascript:alert(1)",
        "JavaScript://shop.example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://shop.example.com/",
        "wss://shop.example.com/",
        "//shop.example.com/",
        "shop.example.com/path",
        "https://user:pw@x.com",
        "https://user@shop.example.com/",
        "https://:pw@shop.example.com/",
        "https://shop.example.com@evil.test/",
        "https://127.0.0.1/",
        "https://127.0.0.1./",
        "https://127.1/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://%31%32%37.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[2001:db8::1]:443/",
        "https://localhost/",
        "https://localhost./",
        "https://intranet/",
        "https://.com/",
        "https://shop.example.com\\@evil.test/",
        "https:\\\\evil.test\\",
        "https://shop.example.com/\\evil.test",
        "https://shop.example.com/\tx",
        "https://shop\t.example.com/",
        "https://shop.example.com/\r\nSet-Cookie: a=b",
        "https://shop.example.com/\nx",
        "https://shop.example.com/a b",
        "https://shop.example.com/\x00",
        "https://shop.example.com\x00.evil.test/",
        "https://shop.example.com/\x7f",
        "https://shop.example.com/\ud800",
        "not a url",
    ],
)
def test_destination_is_refused(text):
    with pytest.raises(InvalidUrl):
        parse_destination(text)


DESTINATION_TEXT = st.one_of(
    st.text(),
    st.builds(
        str.__add__,
        st.sampled_from(["https://", "HTTPS://", "https:", "https://shop.example.com", "https://a.b/", "http://"]),
        st.text(st.characters(codec="utf-8") | st.sampled_from("./:@[]%\\?#")),
    ),
)


@FAST
@given(DESTINATION_TEXT)
@example("https://shop.example.com/\ud800")
def test_any_text_is_a_valid_destination_or_invalid_url(text):
    try:
        value = parse_destination(text)
    except InvalidUrl:
        return
    assert is_acceptable_destination(value)
    assert parse_destination(value) == value


# Loopback http, with ALLOW_HTTP_LOOPBACK_DESTINATIONS (make run's demo shop): off, the cases above hold as they are.

LOOPBACK_ACCEPTED = [
    ("http://127.0.0.1:8000/demo-shop/", "http://127.0.0.1:8000/demo-shop/"),
    (
        "http://localhost:8000/demo-shop/checkout?product=knife",
        "http://localhost:8000/demo-shop/checkout?product=knife",
    ),
    ("HTTP://LOCALHOST/", "http://localhost/"),
    ("http://[::1]:8000/", "http://[::1]:8000/"),
    ("http://127.0.0.1:80/", "http://127.0.0.1/"),
    # Spellings a browser takes to 127.0.0.1 as well: judged, and stored, as the address they are.
    ("http://127.1/", "http://127.0.0.1/"),
    ("http://2130706433/", "http://127.0.0.1/"),
    ("http://0x7f.1/", "http://127.0.0.1/"),
]


@pytest.mark.parametrize(("text", "expected"), LOOPBACK_ACCEPTED)
def test_loopback_http_destination_needs_the_setting(text, expected):
    with pytest.raises(InvalidUrl, match="https://"):
        parse_destination(text)
    assert parse_destination(text, allow_http_loopback=True) == expected


@pytest.mark.parametrize(
    "text",
    [
        "http://shop.example.com/",
        "http://127.0.0.2/",
        "http://0.0.0.0:8000/",
        "http://10.0.0.1/",
        "http://192.168.1.10:8000/",
        "http://[::2]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost./",
        "http://localhost.localdomain/",
        "http://localhost.evil.test/",
        "http://127.0.0.1.nip.io/",
        "http://user:pw@127.0.0.1/",
        "http://user@localhost/",
        "http://127.0.0.1@evil.test/",
        "http://127.0.0.1\\@evil.test/",
        "http://127.0.0.1/\r\nSet-Cookie: a=b",
        "https://127.0.0.1/",
        "https://localhost/",
        "https://[::1]/",
        "ftp://127.0.0.1/",
        "ws://localhost:8000/",
        "file://localhost/etc/passwd",
        "javascript://localhost/%0aalert(1)",
        "//127.0.0.1/",
        "127.0.0.1:8000/",
    ],
)
def test_loopback_setting_allows_nothing_else(text):
    with pytest.raises(InvalidUrl):
        parse_destination(text, allow_http_loopback=True)


def test_final_location_may_be_loopback_http_only_with_the_setting_and_on_the_allowlist():
    hosts = frozenset({"127.0.0.1", "shop.example.com"})
    shop = "http://127.0.0.1:8000/demo-shop/?ct_click=x"
    assert not destination_allowed(shop, hosts)
    assert destination_allowed(shop, hosts, allow_http_loopback=True)
    assert destination_allowed("https://shop.example.com/", hosts, allow_http_loopback=True)
    for location in (
        "http://localhost:8000/",
        "http://[::1]:8000/",
        "http://shop.example.com/",
        "http://user@127.0.0.1:8000/",
        "http://evil.test/",
    ):
        assert not destination_allowed(location, hosts, allow_http_loopback=True), location


LOOPBACK_STARTS = (
    "http://", "HTTP://", "http:", "http://127.0.0.1", "http://localhost", "http://[::1]", "http://127.0.0.1:8000/",
    "http://localhost.", "https://", "https://a.b/",
)  # fmt: skip
LOOPBACK_TEXT = st.builds(
    str.__add__,
    st.sampled_from(LOOPBACK_STARTS),
    st.text(st.characters(codec="utf-8") | st.sampled_from("./:@[]%\\?#0127x")),
)


@FAST
@given(st.one_of(DESTINATION_TEXT, LOOPBACK_TEXT))
@example("http://127.0.0.1@evil.test/")
def test_with_the_setting_a_destination_is_https_as_before_or_http_to_this_machine(text):
    try:
        value = parse_destination(text, allow_http_loopback=True)
    except InvalidUrl:
        return
    url = ada_url.URL(value)
    if url.protocol == "http:":
        assert url.hostname in ("127.0.0.1", "[::1]", "localhost") and url.href == value
        assert not url.username and not url.password and not (CONTROL | {" ", "\\"}) & set(value)
    else:
        assert is_acceptable_destination(value)
    assert parse_destination(value, allow_http_loopback=True) == value


# normalise_host and parse_host_list


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop.example.com", "shop.example.com"),
        ("Shop.Example.COM", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        ("  shop.example.com \n", "shop.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.DE.", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        (CYRILLIC_APPLE, "xn--80ak6aa92e.com"),
    ],
)
def test_host_is_folded_to_ascii_lowercase_without_trailing_dot(text, expected):
    assert normalise_host(text) == expected


@pytest.mark.parametrize("dot", ["\u3002", "\uff0e", "\uff61"])
def test_trailing_ideographic_full_stop_is_folded_like_a_dot(dot):
    assert normalise_host(f"shop.example.com{dot}") == "shop.example.com"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        ".",
        "localhost",
        "localhost.",
        ".com",
        "\u3002com",
        "shop.example.com/path",
        "shop.example.com/",
        "*.example.com",
        "user@shop.example.com",
        "user:pw@shop.example.com",
        "https://shop.example.com",
        "shop.example.com?x=1",
        "shop.example.com#top",
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "[::1]",
        "::1",
        "shop example.com",
        "shop\texample.com",
        "shop\\example.com",
        "shop.example.com\x00",
        "shop.example.com%2f",
    ],
)
def test_host_is_refused(text):
    with pytest.raises(InvalidUrl):
        normalise_host(text)


def test_host_list_is_split_folded_and_deduplicated_in_order():
    text = "shop.example.com, Shop.Example.COM.\nbücher.de   xn--bcher-kva.de,,www.example.com"
    assert parse_host_list(text) == ["shop.example.com", "xn--bcher-kva.de", "www.example.com"]


def test_empty_host_list_is_empty():
    assert parse_host_list("") == []
    assert parse_host_list(" ,\n ") == []


def test_host_list_with_one_bad_host_is_refused():
    with pytest.raises(InvalidUrl):
        parse_host_list("shop.example.com evil.test/path")


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("https://WWW.Coupons.example./deals?x=1", "www.coupons.example"),
        ("https://user:pw@blog.example.org:8443/x", "blog.example.org"),
        ("https://b\u00fccher.example/", "xn--bcher-kva.example"),
        ("https://evil.example\\@blog.example/", "evil.example"),  # a browser reads the backslash as a slash
        ("android-app://Com.Slack/", "com.slack"),
        ("not a url", None),
        ("", None),
        (None, None),
    ],
)
def test_url_host_as_a_browser_reads_it(referrer, host):
    assert url_host(referrer) == host


HOST_TEXT = st.one_of(
    st.text(),
    st.text(st.sampled_from("abcXYZ019-.\u3002\uff0e\u00fc\u0430\u0440\u0435_%:@/[]")),
)


@FAST
@given(HOST_TEXT)
@example(".com")
@example("0.a:1")
def test_any_accepted_host_is_a_usable_destination_host(text):
    try:
        host = normalise_host(text)
    except InvalidUrl:
        return
    assert host == host.lower() and host.isascii() and not host.endswith(".")
    assert normalise_host(host) == host
    # "host:port" (a port deep links on that host may use) is the same host to a destination.
    name = host.partition(":")[0]
    assert host_of(parse_destination(f"https://{host}/")) == name


# safe_next

SAFE_TARGETS = [
    ("/partner/", "/partner/"),
    ("/admin/programs?x=1", "/admin/programs?x=1"),
    ("/admin/programs?next=//evil.test", "/admin/programs?next=//evil.test"),
    ("/partner/#top", "/partner/"),
    ("partner/", "/partner/"),
    ("https://clicktrail.test/partner/", "/partner/"),
    ("HTTPS://CLICKTRAIL.TEST:443/partner/", "/partner/"),
]


@pytest.mark.parametrize(("target", "expected"), SAFE_TARGETS)
def test_same_site_target_is_kept(target, expected):
    assert safe_next(target, BASE) == expected


@pytest.mark.parametrize("target", [None, "", "//evil.test/", "https://evil.test/", "/\r\n/evil.test", "/x\x00"])
def test_unsafe_or_missing_target_gives_none(target):
    assert safe_next(target, BASE) is None


@pytest.mark.parametrize("value", ["//evil.test", "/\\evil.test", "https://evil.test/", "partner/", "/a\nb"])
def test_the_oracle_catches_escapes(value):
    assert escapes_origin(value, BASE)


PREFIXES = (
    "", "/", "//", "///", "////", "/\\", "\\\\", "\\/", "/\\/", " //", "\t//", "\x00//", "//\x00",
    "/%09/", "/\t/", "/\n/", "/\r/", "/%0a/", "/%0d%0a/", "%0d%0a//", "%2f%2f", "%2F%2F", "/%2f", "/%5c", "%5c%5c",
    "/.//", "/./", "/../", "..//", "./..//", "/x/..//", "https:", "https:/", "https://", "https:\\\\", "https:/\\",
    "HTTPS://", "hTtPs://", "http:", "http://", "HTTP://", "http:\\\\", "ftp://", "ws://", "javascript:",
    "JaVaScRiPt:", "javascript://%0a", "data:", "data:text/html,", "\u3000//", "\ufeff//", "/\u3000/", "\u2028//",
    "\uff0f\uff0f", "/\uff0f", "\u2215\u2215", "https://clicktrail.test@", "//clicktrail.test@",
    "https://clicktrail.test:443@", "//clicktrail.test%40", "https://user:pw@",
)  # fmt: skip
HOSTS = (
    "evil.test",
    "evil.test:443",
    "EVIL.TEST",
    "127.0.0.1",
    "2130706433",
    "0x7f.1",
    "[::1]",
    "xn--80ak6aa92e.com",
    CYRILLIC_APPLE,
    "clicktrail.test.evil.test",
    "evil.test\\.clicktrail.test",
)
SUFFIXES = ("", "/", "/login?next=/", "@clicktrail.test")


def redirect_corpus() -> list[str]:
    raw = [prefix + host + suffix for prefix, host, suffix in itertools.product(PREFIXES, HOSTS, SUFFIXES)]
    raw += [f"{scheme}alert(1)//{host}" for scheme in ("javascript:", "JAVASCRIPT:", "java\tscript:") for host in HOSTS]
    encoded = [quote(target, safe=":/\\@") for target in raw] + [quote(quote(target, safe="")) for target in raw]
    return list(dict.fromkeys(raw + encoded + [target.upper() for target in raw]))


CORPUS = redirect_corpus()


@pytest.mark.parametrize("base", BASES)
def test_no_crafted_next_target_leaves_the_site(base):
    assert len(CORPUS) >= 1000
    escaped = [(target, value) for target in CORPUS if escapes_origin(value := safe_next(target, base), base)]
    assert len(escaped) == 0, escaped[:20]


def test_crafted_corpus_reaches_both_answers():
    answers = [safe_next(target, BASE) for target in CORPUS]
    assert sum(answer is None for answer in answers) >= 500
    assert sum(answer is not None for answer in answers) >= 100


NEXT_TEXT = st.one_of(
    st.text(),
    st.builds(
        lambda prefix, host, rest: prefix + host + rest,
        st.sampled_from(PREFIXES),
        st.sampled_from(HOSTS) | st.text(max_size=12),
        st.text(max_size=20),
    ),
)


@FAST
@given(NEXT_TEXT, st.sampled_from(BASES))
@example("/x\ud800", BASE)
def test_any_next_target_stays_on_the_site(target, base):
    assert not escapes_origin(safe_next(target, base), base)
