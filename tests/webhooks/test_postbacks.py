"""Affiliate postbacks end to end: a conversion recorded, approved or reversed calls the affiliate's tracker (a real
http server on loopback) with its macros filled in and encoded, for their own conversions only."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from affiliate import outbound
from affiliate.admin.webhooks import check_postback_url
from affiliate.extensions import db
from affiliate.models import Conversion, ConversionType, Link, Postback, Program, User, utcnow
from affiliate.services import accrual, postbacks, review
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from affiliate.services.postbacks import PostbackError, PostbackSettings
from tests.api.helpers import click
from tests.conftest import build_app, dispose
from tests.factories import Visitor, make_admin, make_affiliate, make_link, make_program
from tests.money.test_accrual import set_plan
from tests.webhooks.receivers import Clock, Receiver, deliveries_of, one_round, send_all

EVERY_MACRO = "&".join(f"{name}={{{name}}}" for name in postbacks.MACROS)
_networks = itertools.count(1)


@pytest.fixture
def app(database_uri) -> Iterator[Flask]:
    """The portal, its affiliates' trackers allowed on plain http (the receivers here are)."""
    app = build_app(database_uri, POSTBACK_ALLOW_HTTP=True)
    yield app
    dispose(app)


@dataclass
class World:
    admin: User
    program: Program
    alice: User
    bob: User
    links: dict[int, Link]  # by affiliate id


@pytest.fixture
def world(app) -> World:
    """One program paying 10% with no hold, and two affiliates with a link each."""
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    links = {person.id: make_link(app, person, program) for person in (alice, bob)}
    return World(admin, program, alice, bob, links)


def add_postback(app, program: Program, owner: User | None, actor: User, template: str, events, method="GET") -> int:
    """A postback saved through the service: ``owner`` None is a program-wide one."""
    with app.app_context():
        saved = postbacks.save(
            db.session,
            db.session.get(Program, program.id),
            owner.id if owner else None,
            PostbackSettings(template, method, tuple(events)),
            actor=db.session.get(User, actor.id),
            now=utcnow(),
            check_url=partial(outbound.check_url, allow_http=True, allow_loopback=True),
        )
        db.session.commit()
        return saved.id


def sale(app, redirector, program: Program, link: Link | None, order: str, amount: int = 60_000, **subs) -> tuple:
    """A sale after a click on ``link`` (with ``subs`` on the click), or an unattributed one: (click id, id)."""
    click_id = None
    if link is not None:
        # Each from a network of its own: one device placing several orders would be flagged as shared.
        click_id = click(Visitor(redirector, ip=f"203.0.{next(_networks)}.7"), link.code, **subs)
        redirector.recorder.flush()
    report = ConversionRequest(
        type=ConversionType.SALE, order_id=order, amount_cents=amount, currency="USD", click_id=click_id
    )
    with app.app_context():
        # A minute after the click, so screening does not find it too fast for a person.
        recorded = record_conversion(
            db.session, db.session.get(Program, program.id), report, now=utcnow() + timedelta(minutes=1)
        )
        db.session.commit()
        assert recorded.conversion.status == "pending"
        return click_id, recorded.conversion.id


def query_of(request) -> dict[str, str]:
    values = parse_qs(urlsplit(request.path).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(found) == 1 for found in values.values()), values
    return {name: found[0] for name, found in values.items()}


def later() -> Clock:
    """The sender's clock, after the conversions recorded a minute ahead."""
    return Clock(utcnow() + timedelta(minutes=5))


def test_macros_are_filled_in_and_encoded_so_a_sub_id_cannot_add_a_parameter_or_change_the_path(
    app, redirector, world, tracker
):
    add_postback(
        app,
        world.program,
        world.alice,
        world.alice,
        tracker.url("/pb/{sub2}/{sub3}?" + EVERY_MACRO),
        ["conversion.recorded"],
    )
    subs = {"sub1": "a&x=1", "sub2": "/../admin", "sub3": "..", "sub4": "50% off #1", "sub5": "é ü"}
    click_id, conversion_id = sale(
        app, redirector, world.program, world.links[world.alice.id], "order #7/8?", 12_345, **subs
    )
    assert send_all(app, later()) == (1, 0)
    (request,) = tracker.received
    path = urlsplit(request.path).path
    assert path == "/pb/%2F..%2Fadmin/", "a sub id stays inside its segment; a lone '..' is left out"
    assert [unquote(segment) for segment in path.split("/")] == ["", "pb", "/../admin", ""]
    assert request.method == "GET" and request.body == b""
    assert query_of(request) == {
        "click_id": click_id,
        **subs,
        "order_id": "order #7/8?",
        "amount": "123.45",
        "commission": "0.00",
        "currency": "USD",
        "status": "pending",
        "event": "conversion.recorded",
        "conversion_id": str(conversion_id),
    }


def test_a_post_postback_sends_the_values_as_a_form_body_too(app, redirector, world, tracker):
    add_postback(
        app,
        world.program,
        world.alice,
        world.alice,
        tracker.url("/get?order={order_id}&amount={amount}"),
        ["conversion.recorded"],
    )
    add_postback(
        app,
        world.program,
        world.alice,
        world.alice,
        tracker.url("/post?order={order_id}"),
        ["conversion.recorded"],
        method="POST",
    )
    click_id, conversion_id = sale(app, redirector, world.program, world.links[world.alice.id], "A-1", sub1="x&y")
    assert send_all(app, later()) == (2, 0)
    (get,), (post,) = tracker.at("/get"), tracker.at("/post")
    assert (get.method, get.body, "content-type" in get.headers) == ("GET", b"", False)
    assert query_of(get) == {"order": "A-1", "amount": "600.00"}
    assert post.method == "POST" and query_of(post) == {"order": "A-1"}
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {name: values[0] for name, values in parse_qs(post.body.decode(), keep_blank_values=True).items()}
    assert form["sub1"] == "x&y" and form["click_id"] == click_id and form["conversion_id"] == str(conversion_id)
    assert set(form) == set(postbacks.MACROS)


def test_only_the_events_chosen_fire_with_what_each_says(app, redirector, world, tracker):
    for event in postbacks.EVENTS:
        add_postback(app, world.program, world.alice, world.alice, tracker.url(f"/{event}?" + EVERY_MACRO), [event])
    _, conversion_id = sale(app, redirector, world.program, world.links[world.alice.id], "A-1", 60_000)
    with app.app_context():
        accrual.run(db.session, now=utcnow() + timedelta(minutes=2))
        accrual.approve_due(db.session, now=utcnow() + timedelta(minutes=2))
        program = db.session.get(Program, world.program.id)
        record_refund(
            db.session, program, RefundRequest(order_id="A-1", amount_cents=10_000), now=utcnow() + timedelta(minutes=2)
        )
        accrual.run(db.session, now=utcnow() + timedelta(minutes=2))
        review.decide(
            db.session,
            [conversion_id],
            "reject",
            actor_id=world.admin.id,
            note="Stolen card",
            now=utcnow() + timedelta(minutes=2),
            reopen=True,
        )
        db.session.commit()
    assert send_all(app, later()) == (4, 0)

    def said(event: str) -> list[tuple[str, str, str]]:
        values = [query_of(request) for request in tracker.at(f"/{event}")]
        return [(value["event"], value["status"], value["commission"]) for value in values]

    assert said("conversion.recorded") == [("conversion.recorded", "pending", "0.00")]
    assert said("conversion.approved") == [("conversion.approved", "approved", "60.00")]
    assert said("conversion.reversed") == [
        ("conversion.reversed", "refunded", "10.00"),  # the refunded sixth of its commission
        ("conversion.reversed", "rejected", "50.00"),  # what was left of it
    ]


def test_an_affiliates_postback_fires_for_their_own_conversions_only_and_a_program_wide_one_for_all(
    app, redirector, world, tracker
):
    elsewhere = make_program(app, world.admin)
    add_postback(
        app, world.program, world.alice, world.alice, tracker.url("/alice?o={order_id}"), ["conversion.recorded"]
    )
    add_postback(app, world.program, world.bob, world.bob, tracker.url("/bob?o={order_id}"), ["conversion.recorded"])
    add_postback(app, world.program, None, world.admin, tracker.url("/all?o={order_id}"), ["conversion.recorded"])
    add_postback(
        app, elsewhere, world.alice, world.alice, tracker.url("/alice-elsewhere?o={order_id}"), ["conversion.recorded"]
    )
    sale(app, redirector, world.program, world.links[world.alice.id], "A-1")
    sale(app, redirector, world.program, world.links[world.bob.id], "B-1")
    sale(app, redirector, world.program, None, "NOBODY-1")
    sale(app, redirector, elsewhere, make_link(app, world.alice, elsewhere), "A-2")
    assert send_all(app, later()) == (5, 0)

    def orders(path: str) -> list[str]:
        return [query_of(request)["o"] for request in tracker.at(path)]

    assert orders("/alice") == ["A-1"]
    assert orders("/bob") == ["B-1"], "never another affiliate's conversions"
    assert orders("/all") == ["A-1", "B-1"], "every attributed conversion of the program"
    assert orders("/alice-elsewhere") == ["A-2"]


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ("https://t.example.com/pb?x={foo}", r"Unknown macros: \{foo\}"),
        ("https://t.example.com/pb/{sub6}", r"Unknown macros: \{sub6\}"),
        ("https://{sub1}.example.com/pb", "not in the host"),
        ("https://t.example.com:{sub1}/pb", "not in the host"),
        ("https://user{sub1}@t.example.com/pb", "not in the host"),
        ("{sub1}://t.example.com/pb", "not in the host"),
        # A URL parser skips the empty authority and finds the host in what looks like the path.
        ("https:///{sub1}.com/pb?order={order_id}", "not in the host"),
        ("https:////{sub1}.example.com/pb", "not in the host"),
        ("https:/{sub1}.example.com/pb", "not in the host"),
        ("https://10.0.0.7/pb?c={click_id}", "private"),
    ],
)
def test_unknown_macros_macros_in_the_host_and_unsafe_hosts_are_refused(app, world, template, refused):
    with app.app_context():
        with pytest.raises(PostbackError, match=refused):
            postbacks.check_template(template, check_postback_url)
        settings = PostbackSettings(template, "GET", ("conversion.recorded",))
        with pytest.raises(PostbackError):
            postbacks.save(
                db.session,
                db.session.get(Program, world.program.id),
                world.alice.id,
                settings,
                actor=db.session.get(User, world.alice.id),
                now=utcnow(),
                check_url=check_postback_url,
            )
        db.session.rollback()
        assert db.session.scalars(select(Postback)).all() == []
        template = "https://t.example.com/pb/{sub1}?c={click_id}&s={sub2}"
        assert postbacks.check_template(f"  {template} ", check_postback_url) == template


def test_http_is_refused_unless_postback_allow_http_when_saved_and_when_sent(app, redirector, world, tracker):
    template = tracker.url("/pb?c={click_id}")
    with app.app_context():
        app.config["POSTBACK_ALLOW_HTTP"] = False
        with pytest.raises(PostbackError, match="https"):
            postbacks.check_template(template, check_postback_url)
        app.config["POSTBACK_ALLOW_HTTP"] = True
        assert postbacks.check_template(template, check_postback_url) == template
    add_postback(app, world.program, world.alice, world.alice, template, ["conversion.recorded"])
    sale(app, redirector, world.program, world.links[world.alice.id], "A-1")
    clock = later()
    app.config["POSTBACK_ALLOW_HTTP"] = False
    assert one_round(app, clock) == (0, 1)
    (refused,) = deliveries_of(app)
    assert tracker.received == [] and "https" in refused.last_error
    app.config["POSTBACK_ALLOW_HTTP"] = True
    clock.now = refused.next_attempt_at
    assert one_round(app, clock) == (1, 0)
    assert len(tracker.received) == 1


def test_a_url_too_long_once_filled_in_is_given_up_at_once_and_the_conversion_still_stored(
    app, redirector, world, tracker: Receiver
):
    add_postback(
        app, world.program, world.alice, world.alice, tracker.url("/pb?a={sub1}&b={sub1}"), ["conversion.recorded"]
    )
    _, conversion_id = sale(app, redirector, world.program, world.links[world.alice.id], "A-1", sub1="é" * 255)
    (row,) = deliveries_of(app)
    assert row.status == "dead" and "longer than" in row.last_error
    assert send_all(app, later()) == (0, 0) and tracker.received == []
    with app.app_context():
        assert db.session.get(Conversion, conversion_id) is not None
        assert db.session.scalar(select(Postback.enabled)), "one click's sub ids do not turn the postback off"


def test_a_postback_turned_off_after_failing_for_days_is_turned_on_and_its_calls_sent_again(
    app, redirector, world, tracker
):
    """The mail that says a postback was turned off says how to get the calls back: turn it on from its page (its
    waiting calls go), and send again those that ran out of retries; both for the affiliate and the admin."""
    from affiliate.services import deliveries
    from tests.factories import Auth, csrf_token

    postback_id = add_postback(app, world.program, world.alice, world.alice, tracker.url("/alice?c={click_id}"),
                               ["conversion.recorded"])  # fmt: skip
    tracker.status = 500
    sale(app, redirector, world.program, world.links[world.alice.id], "down-1")
    clock = later()
    for _ in range(len(deliveries.BACKOFF) + 1):
        one_round(app, clock)
        clock.advance(days=1)
    with app.app_context():
        assert db.session.get(Postback, postback_id).enabled is False
    assert [row.status for row in deliveries_of(app, postback_id=postback_id)] == ["dead"]

    tracker.status, calls = 200, len(tracker.received)
    client = app.test_client()
    Auth(client).login(world.alice.email)
    page = client.get("/partner/postbacks/").get_data(as_text=True)
    assert "Turn on" in page and "Send again the 1 call that ran out of retries" in page
    token = csrf_token(page)
    assert client.post(f"/partner/postbacks/{postback_id}/enabled/on", data={"csrf_token": token}).status_code == 302
    assert client.post(f"/partner/postbacks/{postback_id}/resend", data={"csrf_token": token}).status_code == 302
    assert send_all(app, clock) == (1, 0)
    assert len(tracker.received) == calls + 1
    assert [row.status for row in deliveries_of(app, postback_id=postback_id)] == ["delivered"]
    sale(app, redirector, world.program, world.links[world.alice.id], "up-again")
    assert send_all(app, clock) == (1, 0), "turned on, it hears of new conversions again"
    intruder = app.test_client()
    Auth(intruder).login(world.bob.email)
    other = csrf_token(intruder.get("/partner/postbacks/").get_data(as_text=True))
    assert intruder.post(f"/partner/postbacks/{postback_id}/enabled/off", data={"csrf_token": other}).status_code == 404
