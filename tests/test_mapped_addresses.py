"""IPv4 visitors on a dual-stack listener (::ffff:a.b.c.d) are recorded and judged as the IPv4 address they are."""

from __future__ import annotations

from sqlalchemy import select

from affiliate.addresses import normalise_ip
from affiliate.extensions import db
from affiliate.models import UserSession
from redirector.app import rsgi_environ
from redirector.enrich import client_ip
from tests.conftest import build_app
from tests.factories import PASSWORD, Auth, make_affiliate
from tests.redirector.helpers import CHROME, all_clicks, setup_link


def test_redirector_unmaps_ipv4_mapped_visitors(app, shopper):
    s = setup_link(app)
    for peer in ("::ffff:81.2.69.160", "81.2.69.160", "::ffff:203.0.113.9"):
        shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME}, environ_base={"REMOTE_ADDR": peer})
    mapped, plain, other = all_clicks(app)
    assert (mapped.ip, mapped.ip_prefix, mapped.country) == ("81.2.69.160", "81.2.69.0/24", "GB")
    # The same visitor on either socket family is one visitor: same hash, same device, not a second unique click.
    assert (mapped.ip_hash, mapped.fingerprint) == (plain.ip_hash, plain.fingerprint)
    assert plain.is_unique is False
    # Another IPv4 visitor is another network, not the ::/48 every mapped address used to share.
    assert (other.ip, other.ip_prefix) == ("203.0.113.9", "203.0.113.0/24")
    assert other.fingerprint != mapped.fingerprint


def _rsgi_environ(peer: str, forwarded_for: str) -> dict:
    """The WSGI environ the redirector makes of an RSGI request from ``peer`` with an X-Forwarded-For header."""

    class Scope:
        method, path, query_string, client = "GET", "/r/abcd", "", peer
        headers = {"x-forwarded-for": forwarded_for}

    return rsgi_environ(Scope())


def test_rsgi_peer_and_trusted_forwarded_hop_are_unmapped():
    environ = _rsgi_environ("[::ffff:81.2.69.160]:51234", "::ffff:198.51.100.4")
    assert client_ip(environ, 0) == "81.2.69.160"
    assert client_ip(environ, 1) == "198.51.100.4"


def test_a_forwarded_address_with_an_ipv6_zone_is_recorded_without_it():
    environ = _rsgi_environ("[2001:db8::7]:51234", "fe80::1%eth0, 2001:db8::7")
    assert client_ip(environ, 2) == "fe80::1"
    assert normalise_ip("::ffff:81.2.69.160%3") == "81.2.69.160"
    longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    assert normalise_ip(f"{longest}%enp0s31f6") == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def _session_ip(app) -> str | None:
    with app.app_context():
        return db.session.scalars(select(UserSession.ip).order_by(UserSession.id.desc())).first()


def test_portal_unmaps_the_socket_peer(app, client):
    alice = make_affiliate(app)
    token = Auth(client).token()
    client.post(
        "/login",
        data={"email": alice.email, "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "::ffff:198.51.100.9"},
    )
    assert _session_ip(app) == "198.51.100.9"


def test_portal_unmaps_a_trusted_forwarded_hop(database_uri):
    app = build_app(database_uri, TRUSTED_PROXY_COUNT=1)
    alice = make_affiliate(app)
    client = app.test_client()
    token = Auth(client).token()
    client.post(
        "/login",
        data={"email": alice.email, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "::ffff:203.0.113.20"},
        environ_base={"REMOTE_ADDR": "::1"},
    )
    assert _session_ip(app) == "203.0.113.20"
