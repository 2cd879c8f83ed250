"""Geo, client IP and hostile input: enrichment never costs a click."""

from __future__ import annotations

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from redirector import create_redirector
from redirector.enrich import GeoLookup, parse_user_agent
from tests.factories import Visitor
from tests.redirector.helpers import CHROME, all_clicks, setup_link


@pytest.fixture
def test_geo_database(tmp_path) -> str:
    """A small City database built for the test with mmdb-writer."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"])
    writer.insert_network(
        IPSet(["198.51.100.0/24"]),
        {
            "country": {"iso_code": "NZ", "names": {"en": "New Zealand"}},
            "city": {"names": {"en": "Wellington"}},
            "subdivisions": [{"iso_code": "WGN", "names": {"en": "Wellington Region"}}],
        },
    )
    writer.insert_network(
        IPSet(["2001:db8:1::/48"]),
        {"country": {"iso_code": "DE", "names": {"en": "Germany"}}, "city": {"names": {"en": "Berlin"}}},
    )
    path = tmp_path / "test-city.mmdb"
    writer.to_db_file(str(path))
    return str(path)


def _clicks_through(app, overrides: dict, requests: list[tuple[str, dict]]) -> list:
    s = setup_link(app)
    red = create_redirector({**app.config, **overrides})
    try:
        for ip, headers in requests:
            response = Visitor(red, ip).get(f"/r/{s.link.code}", headers=headers)
            assert response.status_code == 302, (ip, headers)
    finally:
        red.close()
    clicks = all_clicks(app)
    assert len(clicks) == len(requests), "every redirected click is stored"
    return clicks


def test_geo_from_a_test_database(app, test_geo_database):
    clicks = _clicks_through(
        app,
        {"GEOIP_DATABASE": test_geo_database},
        [("198.51.100.23", {}), ("2001:db8:1:2::5", {}), ("192.0.2.1", {})],
    )
    assert [(c.country, c.region, c.city) for c in clicks] == [
        ("NZ", "Wellington Region", "Wellington"),
        ("DE", None, "Berlin"),
        (None, None, None),
    ]
    assert clicks[1].ip_prefix == "2001:db8:1::/48"


def test_geo_from_the_shipped_geolite2_file():
    place = GeoLookup(None).lookup("81.2.69.160")
    assert place.country == "GB"


@pytest.mark.parametrize(
    "content", [None, b"", b"not a maxmind database at all" * 100, b"\xab\xcd\xefMaxMind.com" * 50]
)
def test_missing_or_corrupt_geo_database_still_records_and_redirects(app, tmp_path, content):
    path = tmp_path / "broken.mmdb"
    if content is not None:
        path.write_bytes(content)
    clicks = _clicks_through(app, {"GEOIP_DATABASE": str(path)}, [("81.2.69.160", {"User-Agent": CHROME})])
    assert clicks[0].country is None and clicks[0].browser == "Chrome"


HOSTILE = [
    ("10.1.2.3", {"User-Agent": CHROME}),  # private
    ("127.0.0.1", {"User-Agent": CHROME}),  # loopback
    ("::1", {"User-Agent": CHROME}),
    ("2001:4860:4860::8888", {"User-Agent": CHROME}),  # IPv6
    ("fe80::1", {"User-Agent": CHROME}),
    ("not-an-ip", {"User-Agent": CHROME}),
    ("203.0.113.9", {"User-Agent": "A" * 16384}),  # 16 kB user agent
    ("203.0.113.9", {"User-Agent": "Mozilla/5.0 (" * 2000}),
    ("203.0.113.9", {"User-Agent": "\u202e\ufffd\U0001f600 garbage \\x00 ;;;(((("}),
    ("203.0.113.9", {"User-Agent": CHROME, "Accept-Language": "x" * 20000}),
    ("203.0.113.9", {"User-Agent": CHROME, "Referer": "https://r.example/" + "p" * 9000}),
    ("203.0.113.9", {"User-Agent": CHROME, "Sec-CH-UA": '"Not)A;Brand";v="99"' * 300}),
]


def test_hostile_enrichment_input_still_records_and_redirects(app):
    clicks = _clicks_through(app, {}, HOSTILE)
    assert clicks[5].ip is None
    assert len(clicks[6].user_agent) == 1024
    assert len(clicks[10].referrer) == 2048
    assert {c.ip for c in clicks[:5]} == {"10.1.2.3", "127.0.0.1", "::1", "2001:4860:4860::8888", "fe80::1"}


def test_user_agent_parsing_is_cached():
    parse_user_agent.cache_clear()
    for _ in range(3):
        parse_user_agent(CHROME)
    info = parse_user_agent.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(app):
    spoof = {"User-Agent": CHROME, "X-Forwarded-For": "8.8.8.8, 1.1.1.1"}
    [click] = _clicks_through(app, {"TRUSTED_PROXY_COUNT": 0}, [("203.0.113.50", spoof)])
    assert click.ip == "203.0.113.50"


def test_forwarded_for_counts_only_our_own_proxies(app):
    """One trusted proxy: the address it appended (the last) is the client; earlier ones are the client's claims."""
    spoof = {"User-Agent": CHROME, "X-Forwarded-For": "8.8.8.8, 198.51.100.4"}
    garbage = {"User-Agent": CHROME, "X-Forwarded-For": "<script>"}
    clicks = _clicks_through(app, {"TRUSTED_PROXY_COUNT": 1}, [("127.0.0.1", spoof), ("127.0.0.1", garbage)])
    assert [c.ip for c in clicks] == ["198.51.100.4", None]
