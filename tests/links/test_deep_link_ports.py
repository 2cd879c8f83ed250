"""Deep links keep to the destination's scheme and port (unless the program lists host:port) and no // paths."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Link
from affiliate.services.links import LinkError
from affiliate.urls import InvalidUrl, normalise_host
from tests.factories import Auth, make_admin, make_affiliate, make_link, make_program

REFUSED = [
    "https://shop.example.com:8443/admin",
    "https://shop.example.com:22/",
    "https://www.example.com:9200/_cat/indices",
    "http://shop.example.com/",
    "https://shop.example.com//evil.test/path",
    "https://shop.example.com/%2e//evil.test",
    "/.//evil.test/x",
    "//evil.test/x",
    "/a/..//evil.test",
]
ACCEPTED = {
    "/shoes?c=red": "https://shop.example.com/shoes?c=red",
    "https://shop.example.com:443/sale": "https://shop.example.com/sale",
    "https://www.example.com/a//b": "https://www.example.com/a//b",
}


@pytest.fixture
def setup(app):
    admin = make_admin(app)
    program = make_program(
        app,
        admin,
        destination_url="https://shop.example.com/signup",
        allowed_hosts=("shop.example.com", "www.example.com", "www.example.com:8443"),
    )
    return make_affiliate(app), program


@pytest.mark.parametrize("deep_link", REFUSED)
def test_crafted_deep_links_are_refused(app, setup, deep_link):
    affiliate, program = setup
    with pytest.raises(LinkError):
        make_link(app, affiliate, program, deep_link=deep_link)


@pytest.mark.parametrize(("deep_link", "stored"), ACCEPTED.items())
def test_ordinary_deep_links_still_work(app, setup, deep_link, stored):
    affiliate, program = setup
    assert make_link(app, affiliate, program, deep_link=deep_link).deep_link == stored


def test_a_port_the_program_lists_is_allowed_on_that_host_only(app, setup):
    affiliate, program = setup
    link = make_link(app, affiliate, program, deep_link="https://www.example.com:8443/app")
    assert link.deep_link == "https://www.example.com:8443/app"
    with pytest.raises(LinkError):
        make_link(app, affiliate, program, deep_link="https://shop.example.com:8443/app")
    assert normalise_host("WWW.Example.com:08443") == "www.example.com:8443"
    for bad in ("www.example.com:0", "www.example.com:65536", "www.example.com:x", ":8443", "*.example.com"):
        with pytest.raises(InvalidUrl):
            normalise_host(bad)


def test_a_destination_on_another_port_may_list_a_host_for_its_usual_port(app):
    """With the destination on 8443, a deep link to a listed host's usual port needs host:443, which may be listed;
    a host listed only with a port is allowed on that port."""
    from affiliate.urls import deep_link_problem

    destination = "https://shop.example.com:8443/"
    hosts = {"shop.example.com", "www.example.com:443", "api.example.net:8443"}
    assert deep_link_problem("https://www.example.com/sale", destination, hosts) is None
    assert deep_link_problem("https://api.example.net:8443/x", destination, hosts) is None
    assert deep_link_problem("https://api.example.net/x", destination, hosts) is not None
    assert deep_link_problem("https://www.example.com:9000/x", destination, hosts) is not None


def test_the_link_form_says_why_and_stores_nothing(app, setup):
    affiliate, program = setup
    client = app.test_client()
    auth = Auth(client)
    auth.login(affiliate.email)
    response = auth.post("/partner/links/new", {"program_id": program.id, "deep_link": REFUSED[0]})
    assert response.status_code == 200
    assert "destination&#39;s port" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 0


@pytest.mark.parametrize("stored", ["https://shop.example.com:8443/admin", "https://shop.example.com//evil.test/x"])
def test_redirector_refuses_such_deep_links_stored_before_the_rule(app, setup, shopper, stored):
    affiliate, program = setup
    link = make_link(app, affiliate, program, deep_link="/sale")
    with app.app_context():
        db.session.get(Link, link.id).deep_link = stored  # as a link made before deep links were held to this
        db.session.commit()
    location = shopper.get(f"/r/{link.code}").headers["Location"]
    assert location.startswith("https://shop.example.com/signup?"), location


def test_a_host_listed_only_with_a_port_is_followed_on_that_port_and_refused_on_others(app, shopper):
    """The portal and the redirector read the allowlist alike: a deep link the form took is one shoppers reach."""
    admin = make_admin(app)
    program = make_program(app, admin, destination_url="https://shop.example.com/signup",
                           allowed_hosts=("shop.example.com", "api.example.net:8443"))  # fmt: skip
    affiliate = make_affiliate(app)
    link = make_link(app, affiliate, program, deep_link="https://api.example.net:8443/x")
    answer = shopper.get(f"/r/{link.code}")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("https://api.example.net:8443/x")
    for elsewhere in ("https://api.example.net/x", "https://api.example.net:9443/x"):
        with pytest.raises(LinkError):
            make_link(app, affiliate, program, deep_link=elsewhere)


def test_a_fallback_on_a_host_listed_only_with_a_port_must_use_that_port(app):
    from affiliate.urls import destination_allowed

    hosts = {"shop.example.com", "api.example.net:8443"}
    assert destination_allowed("https://api.example.net:8443/paused", hosts)
    assert not destination_allowed("https://api.example.net/paused", hosts)
    assert not destination_allowed("https://api.example.net:9443/paused", hosts)
    assert destination_allowed("https://shop.example.com:8443/paused", hosts), "a plain entry: the port is not judged"
