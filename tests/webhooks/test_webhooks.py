"""Merchant webhooks end to end: each event from the service where it happens to a real https receiver that verifies
its signature; retries, a receiver down or gone for good, redelivery, secret rotation, and what payloads never hold."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from affiliate import outbound
from affiliate.extensions import db
from affiliate.models import Click, Conversion, ConversionType, Delivery, Program, User, WebhookEndpoint, utcnow
from affiliate.services import accounts, accrual, deliveries, enrollment, review, signups, webhooks
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from affiliate.services.payouts import approve_batch, build_batch, mark_failed, mark_paid
from tests.api.helpers import click, make_merchant
from tests.conftest import build_app, dispose
from tests.factories import (
    PASSWORD,
    STAFF_TOTP_SECRET,
    Visitor,
    csrf_token,
    make_admin,
    make_affiliate,
    make_finance,
    make_link,
    make_program,
)
from tests.finance.conftest import set_details
from tests.mail.smtp import text_of
from tests.money.test_accrual import set_plan
from tests.webhooks.receivers import ROUNDS, Clock, add_endpoint, deliveries_of, one_round, send_all

CUSTOMER_IP = "198.51.100.23"
SUSPENSION = "Cookie stuffing seen on three sites"
REVIEW_NOTE = "Chargeback: the card was stolen"
FAILURE = "Account closed at the bank"
PAT_PAYPAL, BOB_IBAN, BOB_ACCOUNT = "pat.pay@example.com", "GB82WEST12345698765432", "B. Builder Holdings"
MEMBER_EMAIL = "mia.member@example.com"
# Keys no payload may have at any depth: secrets, payout details, fraud evidence, where a customer was.
FORBIDDEN_KEYS = {"secret", "signing_secret", "token", "password", "password_hash", "totp_secret", "fraud_score",
                  "fraud_reasons", "ip", "customer_ip", "fingerprint", "customer_fingerprint", "visitor_id",
                  "destination", "iban", "payout_iban", "payout_email", "payee_name", "status_reason", "note",
                  "failure_reason", "hold_reason"}  # fmt: skip


@pytest.fixture
def app(database_uri, smtp) -> Iterator[Flask]:
    """The portal, mailing through the loopback SMTP server (an endpoint turned off is mailed to its creator)."""
    app = build_app(database_uri, PUBLIC_BASE_URL="http://portal.test", **smtp.settings)
    yield app
    dispose(app)


@dataclass
class Scene:
    """What drive_every_event made: the program, its people and orders, and values no payload may carry."""

    program: Program
    admin: User
    pat_id: int
    bob_id: int
    orders: dict[str, int]
    sensitive: list[str]


def drive_every_event(
    app, client, redirector, program: Program, admin: User, endpoints: dict[str, WebhookEndpoint]
) -> Scene:
    """Cause every event type through the service (or route) where it happens, on one program.

    Pat applies through the form and is approved, enrolled and credited with three sales (one flagged, then
    approved in review and later rejected; one rejected by screening, as its customer is Pat); Bob joins by
    invitation and makes one; Carol is suspended. The merchant reports and refunds through the API; finance pays
    Pat and Bob's payout fails; a member signs up with Pat's referral code.
    """
    form = {
        "name": "Pat Applicant",
        "email": "pat@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "website": "https://pat-cooks.example",
        "promotion": "Recipes with the tools I use",
        "csrf_token": csrf_token(client.get("/apply").get_data(as_text=True)),
    }
    assert client.post("/apply", data=form).status_code == 302
    bob, carol = make_affiliate(app, name="Bob"), make_affiliate(app, name="Carol")
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        now = utcnow()
        actor = db.session.get(User, admin.id)
        pat = db.session.scalar(select(User).where(User.email == "pat@example.com"))
        accounts.decide_affiliate(db.session, pat, "approve", reason=None, actor=actor, now=now)
        accounts.decide_affiliate(
            db.session, db.session.get(User, carol.id), "suspend", reason=SUSPENSION, actor=actor, now=now
        )
        row = db.session.get(Program, program.id)
        enrollment.apply(db.session, row, pat, now=now)
        enrollment.decide(db.session, row, pat.id, "approve", actor_id=admin.id, reason=None, now=now)
        token = enrollment.invitation(app.config["SECRET_KEY"], row, None)
        enrollment.redeem(
            db.session, app.config["SECRET_KEY"], token, db.session.get(User, bob.id), max_age_days=30, now=now
        )
        db.session.commit()
        db.session.refresh(pat)
        db.session.expunge(pat)
    links = {"pat": make_link(app, pat, program), "bob": make_link(app, bob, program)}
    # A visitor each, from two networks: one device placing four orders would be flagged as shared.
    clicks = {
        order: click(Visitor(redirector, ip=ip), links[owner].code)
        for order, owner, ip in (
            ("S1", "pat", "203.0.113.7"),
            ("S2", "pat", "198.51.100.7"),
            ("S3", "pat", "203.0.113.8"),
            ("S4", "bob", "198.51.100.8"),
        )
    }
    redirector.recorder.flush()
    merchant = make_merchant(app, program, admin)
    # A minute after the click, so screening does not find it too fast for a person.
    customer = {"external_id": "cus-1", "email": "shopper@example.com", "ip": CUSTOMER_IP}
    occurred = _iso(utcnow() + timedelta(seconds=60))
    sale = merchant.sale("S1", 60_000, click_id=clicks["S1"], occurred_at=occurred, customer=customer)
    assert sale.status_code == 201 and sale.json["conversion"]["status"] == "pending", sale.json
    later = utcnow() + timedelta(minutes=1)
    with app.app_context():
        row = db.session.get(Program, program.id)
        recorded = {}
        for order, amount, email in (
            ("S2", 20_000, "deals@mailinator.com"),
            ("S3", 15_000, "pat@example.com"),
            ("S4", 30_000, "buyer@example.com"),
        ):
            report = ConversionRequest(
                type=ConversionType.SALE,
                order_id=order,
                amount_cents=amount,
                currency="USD",
                customer_email=email,
                click_id=clicks[order],
            )
            recorded[order] = record_conversion(db.session, row, report, now=later).conversion
        db.session.commit()
        assert [recorded[order].status for order in ("S2", "S3", "S4")] == ["flagged", "rejected", "pending"]
        orders = {order: conversion.id for order, conversion in recorded.items()}
        orders["S1"] = sale.json["conversion"]["id"]
        review.decide(db.session, [orders["S2"]], "approve", actor_id=admin.id, note=None, now=later)
        accrual.run(db.session, now=later + timedelta(minutes=1))
        accrual.approve_due(db.session, now=later + timedelta(minutes=1))
        db.session.commit()
    refund = merchant.post(
        "/api/v1/refunds",
        {"order_id": "S1", "refund_id": "R1", "amount": 10_000, "occurred_at": _iso(utcnow() + timedelta(seconds=90))},
    )
    assert refund.status_code == 201, refund.json
    with app.app_context():
        accrual.run(db.session, now=later + timedelta(minutes=2))
        review.decide(
            db.session,
            [orders["S2"]],
            "reject",
            actor_id=admin.id,
            note=REVIEW_NOTE,
            now=later + timedelta(minutes=2),
            reopen=True,
        )
        db.session.commit()
    set_details(app, pat, "paypal", email=PAT_PAYPAL)
    set_details(app, bob, "bank", name=BOB_ACCOUNT, iban=BOB_IBAN)
    with app.app_context():
        paying = db.session.get(User, checker.id)
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=paying, now=utcnow())
        payouts = {payout.affiliate_id: payout for payout in batch.payouts}
        assert mark_paid(db.session, payouts[pat.id], reference="PP-77", actor=paying, now=utcnow())
        assert mark_failed(db.session, payouts[bob.id], reason=FAILURE, actor=paying, now=utcnow())
        signup = signups.Signup(
            name="Mia Member", email=MEMBER_EMAIL, password=PASSWORD, ref=pat.referral_code, program_id=program.id
        )
        signups.sign_up(
            db.session,
            signup,
            password_hash=app.extensions["clicktrail.hasher"].hash(PASSWORD),
            min_password_length=8,
            now=utcnow(),
        )
        db.session.commit()
        traces = db.session.execute(select(Click.ip, Click.fingerprint, Click.visitor_id)).all()
        sensitive = [
            pat.password_hash,
            STAFF_TOTP_SECRET,
            merchant.token,
            merchant.secret,
            PAT_PAYPAL,
            BOB_IBAN,
            BOB_ACCOUNT,
            CUSTOMER_IP,
            SUSPENSION,
            REVIEW_NOTE,
            FAILURE,
            MEMBER_EMAIL,
            "disposable-address provider",
            "the customer's email is the affiliate's",
            *(endpoint.secret for endpoint in endpoints.values()),
            *(value for trace in traces for value in trace if value),
        ]
    return Scene(program, admin, pat.id, bob.id, orders, sensitive)


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def everything(app, client, redirector, hooks, clock):
    """One endpoint per event type on one program, every event caused, and every message sent."""
    admin = make_admin(app)
    program = make_program(app, admin, enrollment="application", hold_days=0, minimum_payout_cents=1_000)
    set_plan(app, program.id, percent_bps=1_000)
    endpoints = {}
    for event in webhooks.EVENTS:
        endpoints[event] = add_endpoint(app, program, admin, hooks.url(f"/{event}"), events=[event])
        hooks.secrets[f"/{event}"] = [endpoints[event].secret]
    scene = drive_every_event(app, client, redirector, program, admin, endpoints)
    clock.now = utcnow() + timedelta(minutes=10)  # after every event, some of which were dated ahead
    delivered, failed = send_all(app, clock)
    assert failed == 0 and delivered == len(hooks.received)
    return scene


def test_each_event_reaches_the_endpoint_subscribed_to_it_and_no_other(everything, hooks):
    arrived = Counter(request.path for request in hooks.received)
    assert arrived == Counter(
        {
            "/affiliate.applied": 1,
            "/affiliate.approved": 1,
            "/affiliate.suspended": 1,
            "/enrollment.approved": 2,
            "/link.created": 2,
            "/conversion.created": 5,
            "/conversion.flagged": 1,
            "/conversion.approved": 1,
            "/conversion.rejected": 2,
            "/refund.created": 1,
            "/commission.created": 3,
            "/commission.approved": 3,
            "/commission.reversed": 2,
            "/payout_batch.approved": 1,
            "/payout.paid": 1,
            "/payout.failed": 1,
        }
    )
    for request in hooks.received:
        assert request.method == "POST" and request.headers["content-type"] == "application/json"
        assert request.payload["type"] == request.path[1:], "an endpoint receives only the event it chose"
        assert request.verified, "its own endpoint's secret verifies every message"
        assert request.payload["api_version"] == webhooks.API_VERSION

    def data(event: str) -> list[dict]:
        return [request.payload["data"] for request in hooks.at(f"/{event}")]

    scene = everything
    created = {item["order_id"]: item for item in data("conversion.created")}
    assert created["S1"]["amount"] == 60_000 and created["S1"]["currency"] == "USD"
    assert created["S1"]["customer"] == {"external_id": "cus-1", "email": "shopper@example.com"}
    assert created["S1"]["affiliate_id"] == scene.pat_id and created["S1"]["attribution"]["matched_by"] == "click_id"
    assert created["S4"]["affiliate_id"] == scene.bob_id
    member = created[next(order for order in created if order.startswith("member-"))]
    assert member["affiliate_id"] == scene.pat_id, "announced once credited to the referral code's owner"
    assert member["customer"]["email"] is None, "an address typed on our signup page, not the merchant's"
    assert [item["order_id"] for item in data("conversion.flagged")] == ["S2"]
    assert sorted((item["order_id"], item["status"]) for item in data("conversion.rejected")) == [
        ("S2", "rejected"),
        ("S3", "rejected"),
    ]
    (refund,) = data("refund.created")
    assert (refund["refund_id"], refund["amount"], refund["refund_of"]) == ("R1", 10_000, scene.orders["S1"])
    reversed_ = {item["reason"]: item for item in data("commission.reversed")}
    assert reversed_["refund"]["reversed_amount"] == 1_000 and reversed_["refund"]["refund"]["refund_id"] == "R1"
    assert reversed_["refund"]["status"] == "approved", "a partial refund leaves the rest of the commission"
    assert reversed_["conversion_rejected"]["conversion_id"] == scene.orders["S2"]
    assert reversed_["conversion_rejected"]["reversed_amount"] == 2_000
    assert sorted(item["amount"] for item in data("commission.approved")) == [2_000, 3_000, 6_000]
    (approved,) = data("affiliate.approved")
    assert (approved["status"], approved["previous_status"]) == ("active", "pending")
    (batch,) = data("payout_batch.approved")
    assert (batch["total"], batch["payouts"], batch["held"], batch["currency"]) == (8_000, 2, 0, "USD")
    (paid,) = data("payout.paid")
    assert (paid["affiliate_id"], paid["amount"], paid["reference"]) == (scene.pat_id, 5_000, "PP-77")
    assert (paid["method"], paid["status"]) == ("paypal", "paid")
    (failed,) = data("payout.failed")
    assert (failed["affiliate_id"], failed["amount"], failed["status"]) == (scene.bob_id, 3_000, "failed")


def test_payloads_hold_no_secret_payout_details_fraud_evidence_or_customer_whereabouts(everything, hooks):
    assert len(hooks.received) == 28
    for request in hooks.received:
        text = request.body.decode()
        leaked = [value for value in everything.sensitive if value in text]
        assert not leaked, f"{request.path} carries {leaked}"
        assert not _keys(request.payload) & FORBIDDEN_KEYS, request.path


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


def test_another_programs_events_never_reach_this_programs_endpoint(app, hooks, clock):
    admin = make_admin(app)
    ours = make_program(app, admin, currency="EUR")
    theirs = make_program(app, admin, hold_days=0, minimum_payout_cents=1_000)
    set_plan(app, theirs.id, percent_bps=1_000)
    mine = add_endpoint(app, ours, admin, hooks.url("/ours"))
    other = add_endpoint(app, theirs, admin, hooks.url("/theirs"))
    hooks.secrets.update({"/ours": [mine.secret], "/theirs": [other.secret]})
    alice, maker, checker = make_affiliate(app), make_finance(app), make_finance(app)
    set_details(app, alice, "paypal", email="alice.pay@example.com")
    make_link(app, alice, theirs)
    with app.app_context():
        program = db.session.get(Program, theirs.id)
        report = ConversionRequest(type=ConversionType.SALE, order_id="T-1", amount_cents=50_000, currency="USD")
        sale = record_conversion(db.session, program, report, now=utcnow()).conversion
        sale.affiliate_id = alice.id  # credited as attribution would have
        db.session.flush()
        accrual.run(db.session, now=utcnow())
        accrual.approve_due(db.session, now=utcnow())
        record_refund(db.session, program, RefundRequest(order_id="T-1", amount_cents=5_000), now=utcnow())
        accrual.run(db.session, now=utcnow())
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        mark_paid(db.session, batch.payouts[0], reference="P-1", actor=db.session.get(User, checker.id), now=utcnow())
        review.decide(db.session, [sale.id], "reject", actor_id=admin.id, note="Fraud", now=utcnow(), reopen=True)
        db.session.commit()
    clock.now = utcnow() + timedelta(seconds=5)
    assert send_all(app, clock)[1] == 0
    assert {request.payload["type"] for request in hooks.at("/theirs")} >= {
        "link.created",
        "conversion.created",
        "commission.created",
        "commission.approved",
        "refund.created",
        "commission.reversed",
        "conversion.rejected",
        "payout_batch.approved",
        "payout.paid",
    }
    assert hooks.at("/ours") == [], "nothing of another program, nor a payout in another currency"
    with app.app_context():
        accounts.decide_affiliate(
            db.session,
            db.session.get(User, alice.id),
            "suspend",
            reason="Spam",
            actor=db.session.get(User, admin.id),
            now=utcnow(),
        )
        db.session.commit()
    send_all(app, clock)
    assert [request.payload["type"] for request in hooks.at("/ours")] == ["affiliate.suspended"], (
        "an affiliate's account is every program's business"
    )


def _link_event_endpoint(app, hooks) -> tuple[User, Program, WebhookEndpoint]:
    """An endpoint that wants link.created only, and an affiliate ready to create links."""
    admin = make_admin(app)
    program = make_program(app, admin)
    endpoint = add_endpoint(app, program, admin, hooks.url("/hook"), events=["link.created"])
    hooks.secrets["/hook"] = [endpoint.secret]
    return admin, program, endpoint


def test_a_500_is_retried_with_growing_delays_and_the_same_id_until_it_answers_200(app, hooks, clock):
    _, program, endpoint = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    hooks.statuses = [500, 500, 500]
    waits = []
    for attempt in range(1, 4):
        assert one_round(app, clock) == (0, 1)
        (row,) = deliveries_of(app)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", attempt, 500)
        waits.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at - timedelta(seconds=1)
        assert one_round(app, clock) == (0, 0), "not sent again before its time"
        clock.now = row.next_attempt_at
    assert one_round(app, clock) == (1, 0)
    (row,) = deliveries_of(app)
    assert (row.status, row.attempts, row.last_status_code, row.delivered_at) == ("delivered", 4, 200, clock.now)
    for wait, planned in zip(waits, deliveries.BACKOFF, strict=False):
        assert planned * (1 - deliveries.JITTER) <= wait <= planned * (1 + deliveries.JITTER)
    assert waits == sorted(waits) and len(set(waits)) == 3, "each wait longer than the one before"
    assert len(hooks.received) == 4
    assert {request.headers["webhook-id"] for request in hooks.received} == {row.message_id}
    assert len({request.body for request in hooks.received}) == 1, "the body never changes between tries"
    stamps = [int(request.headers["webhook-timestamp"]) for request in hooks.received]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4, "signed afresh at each try"
    assert all(request.verified == [endpoint.secret] for request in hooks.received)


@pytest.mark.parametrize("failure", [500, 422, 502, 504, 0], ids=["500", "422", "502", "504", "no-answer"])
def test_a_message_the_receiver_refuses_keeps_its_backoff_while_its_other_messages_succeed(app, hooks, clock, failure):
    """A success wakes what waits because nobody answered, once; a message that fails while the receiver answers
    its others (refused by it, or failing alone behind its proxy) is not woken again and again, or steady traffic
    would spend its three days of retries in seconds and turn the endpoint off."""
    _, program, endpoint = _link_event_endpoint(app, hooks)
    alice = make_affiliate(app)
    make_link(app, alice, program)
    (refused,) = deliveries_of(app)
    hooks.refused[refused.message_id] = failure
    assert one_round(app, clock) == (0, 1)
    for _ in range(20):  # another message every second, each delivered at once
        clock.advance(seconds=1)
        make_link(app, alice, program)
        assert one_round(app, clock)[0] == 1
    row = next(row for row in deliveries_of(app) if row.id == refused.id)
    # Its retries wait 5 s, then 30 s (each within a fifth): in these 20 s it was tried once more, or twice when
    # nobody answered it (woken once by the next success, then its backoff), not every second.
    assert row.status == "pending" and row.attempts in ((2,) if failure in (500, 422) else (2, 3)), row.attempts
    assert row.last_status_code == (failure or None)
    assert sum(request.headers["webhook-id"] == refused.message_id for request in hooks.received) == row.attempts
    with app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint.id).enabled


def test_a_200_whose_body_holds_a_nul_is_delivered_once(app, hooks, clock):
    """What a receiver answers is kept as the delivery's last response: a NUL in it, which PostgreSQL's text refuses,
    made the delivered message fail to record, so it was sent again for three days and its endpoint turned off."""
    _, program, _ = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    hooks.reply = b"received\x00ok"
    assert one_round(app, clock) == (1, 0)
    (row,) = deliveries_of(app)
    assert (row.status, row.last_response) == ("delivered", "received\ufffdok")
    clock.advance(hours=1)
    assert one_round(app, clock) == (0, 0) and len(hooks.received) == 1


def test_a_receiver_down_for_ten_minutes_gets_everything_once_it_is_back(app, hooks, clock):
    _, program, _ = _link_event_endpoint(app, hooks)
    alice = make_affiliate(app)
    for _ in range(3):
        make_link(app, alice, program)
    hooks.stop()
    back_at = clock.now + timedelta(minutes=10)
    for _ in range(ROUNDS):
        assert one_round(app, clock)[0] == 0
        earliest = min(row.next_attempt_at for row in deliveries_of(app))
        if earliest > back_at:
            break
        clock.now = earliest
    rows = deliveries_of(app)
    assert all(row.status == "pending" and row.attempts >= 3 for row in rows), "retried while it was down"
    assert all(row.last_error == "connection refused" for row in rows)
    hooks.start()
    # The first retry after the receiver is back succeeds, and the other messages need not wait for theirs.
    first, *others = sorted(rows, key=lambda row: (row.next_attempt_at, row.id))
    clock.now = first.next_attempt_at
    assert all(row.next_attempt_at > clock.now for row in others)
    assert one_round(app, clock) == (1, 0)
    assert one_round(app, clock) == (2, 0)
    assert all(row.status == "delivered" for row in deliveries_of(app))
    assert sorted(request.headers["webhook-id"] for request in hooks.received) == sorted(r.message_id for r in rows)


def _until_dead(app, clock: Clock) -> tuple[int, timedelta]:
    """Run the sender at each retry's time until the delivery is dead: (tries, time from first to last)."""
    started = clock.now
    for tries in range(1, len(deliveries.BACKOFF) + 3):
        one_round(app, clock)
        (row,) = deliveries_of(app)
        if row.status == "dead":
            return tries, clock.now - started
        clock.now = row.next_attempt_at
    raise AssertionError("the delivery never gave up")


def test_after_the_last_retry_the_delivery_is_dead_the_endpoint_off_and_its_creator_mailed(
    app, hooks, clock, smtp, deliver
):
    admin, program, endpoint = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    hooks.status = 500
    tries, spent = _until_dead(app, clock)
    assert tries == len(deliveries.BACKOFF) + 1 == len(hooks.received)
    total = timedelta(seconds=sum(deliveries.BACKOFF))
    assert total * (1 - deliveries.JITTER) <= spent <= total * (1 + deliveries.JITTER), "about three days"
    assert all(request.verified for request in hooks.received)
    (row,) = deliveries_of(app)
    with app.app_context():
        off = db.session.get(WebhookEndpoint, endpoint.id)
        assert not off.enabled and off.disabled_at == clock.now
        assert row.message_id in off.disabled_reason and "answered 500" in off.disabled_reason
    while deliver()[0]:  # the outbox holds the mail the dead endpoint caused; send all of it
        continue
    (mail,) = [message for message in smtp.inbox.messages if message["To"] == admin.email]
    assert mail["Subject"] == "Your webhook endpoint was turned off"
    assert endpoint.url in text_of(mail)
    make_link(app, make_affiliate(app), program)
    assert len(deliveries_of(app)) == 1, "an endpoint turned off gets no new messages"


def test_redeliver_sends_a_dead_message_again_with_the_same_id(app, hooks, clock):
    admin, program, endpoint = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    hooks.status = 503
    _until_dead(app, clock)
    hooks.status = 200
    with app.app_context():
        webhooks.set_enabled(
            db.session,
            db.session.get(WebhookEndpoint, endpoint.id),
            True,
            actor=db.session.get(User, admin.id),
            now=clock.now,
        )
        db.session.commit()
    assert one_round(app, clock) == (0, 0), "turning the endpoint on leaves dead messages dead"
    (dead,) = deliveries_of(app)
    with app.app_context():
        deliveries.redeliver(db.session, db.session.merge(dead), now=clock.now)
        db.session.commit()
    assert one_round(app, clock) == (1, 0)
    (row,) = deliveries_of(app)
    assert (row.status, row.attempts, row.message_id) == ("delivered", 1, dead.message_id)
    last = hooks.received[-1]
    assert last.headers["webhook-id"] == dead.message_id and last.verified == [endpoint.secret]
    assert {request.headers["webhook-id"] for request in hooks.received} == {dead.message_id}


def test_during_a_rotation_both_secrets_sign_and_after_the_overlap_only_the_new_one(app, hooks, clock):
    admin, program, endpoint = _link_event_endpoint(app, hooks)
    old = endpoint.secret
    with app.app_context():
        new = webhooks.rotate_secret(
            db.session,
            db.session.get(WebhookEndpoint, endpoint.id),
            actor=db.session.get(User, admin.id),
            now=clock.now,
        )
        db.session.commit()
    hooks.secrets["/hook"] = [old, new]
    alice = make_affiliate(app)
    make_link(app, alice, program)
    assert one_round(app, clock) == (1, 0)
    during = hooks.received[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified == [old, new], "a receiver on either secret accepts it"
    clock.advance(hours=24, seconds=1)
    make_link(app, alice, program)
    assert one_round(app, clock) == (1, 0)
    after = hooks.received[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified == [new], "the old secret no longer verifies"


def test_a_message_held_by_a_slow_receiver_is_not_sent_again_by_another_sender_meanwhile(app, hooks, clock):
    _, program, _ = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    hooks.hold = threading.Event()
    outcome: list[tuple[int, int]] = []
    first = threading.Thread(target=lambda: outcome.append(one_round(app, clock)))
    first.start()
    try:
        assert hooks.holding.wait(10), "the receiver never got the message"
        assert one_round(app, clock) == (0, 0), "claimed by the first sender while it waits for the answer"
    finally:
        hooks.hold.set()
        first.join(10)
    assert outcome == [(1, 0)] and len(hooks.received) == 1
    assert [row.status for row in deliveries_of(app)] == ["delivered"]


def test_messages_a_slow_round_had_not_reached_when_its_claim_ran_out_are_sent_once(app, hooks, clock, monkeypatch):
    """A sender claims a round, and its receivers are so slow that the claim on the rest runs out: another
    sender takes them and sends them, and the first, reaching them at last, leaves them alone. (The first message
    is reached half a claim after the round was claimed, as after earlier slow sends; its own claim is extended
    then, so it is not taken while it is being sent.)"""
    _, program, _ = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)
    make_link(app, make_affiliate(app), program)
    hold = app.config["DELIVERY_CLAIM_SECONDS"]
    keep_claim, reached = deliveries.keep_claim, []

    def reached_late(session, due, *, now, hold_for):
        if not reached:
            clock.advance(seconds=hold / 2)
        reached.append(due.id)
        return keep_claim(session, due, now=clock(), hold=hold_for)

    monkeypatch.setattr(deliveries, "keep_claim", lambda session, due, *, now, hold: reached_late(
        session, due, now=now, hold_for=hold))  # fmt: skip
    hooks.hold = threading.Event()
    outcome: list[tuple[int, int]] = []
    first = threading.Thread(target=lambda: outcome.append(one_round(app, clock)))
    first.start()
    try:
        assert hooks.holding.wait(10), "the receiver never got the first message"
        clock.advance(seconds=hold / 2 + 1)  # the round's claim has run out; the first message's has not
        hooks.hold_after = 2  # the other sender's message is answered at once
        assert one_round(app, clock) == (1, 0), "the second message, its claim run out, goes with another sender"
    finally:
        hooks.hold.set()
        first.join(10)
    assert outcome == [(1, 0)], "the first sender sent its first message only"
    ids = [request.headers["webhook-id"] for request in hooks.received]
    assert len(ids) == 2 and len(set(ids)) == 2, "each message once"
    rows = deliveries_of(app)
    assert [row.status for row in rows] == ["delivered", "delivered"]
    assert [row.attempts for row in rows] == [1, 1], "a claim that ran out before it was reached is not a try"


def test_a_message_to_an_endpoint_turned_off_waits_uncounted_and_goes_when_it_is_turned_on(app, hooks, clock):
    admin, program, endpoint = _link_event_endpoint(app, hooks)
    make_link(app, make_affiliate(app), program)

    def switch(on: bool) -> None:
        with app.app_context():
            webhooks.set_enabled(
                db.session,
                db.session.get(WebhookEndpoint, endpoint.id),
                on,
                actor=db.session.get(User, admin.id),
                now=clock.now,
            )
            db.session.commit()

    switch(False)
    for _ in range(len(deliveries.BACKOFF) + 3):  # more rounds than its retries: none of them may count
        one_round(app, clock)
        clock.advance(hours=2)
    (row,) = deliveries_of(app)
    assert (row.status, row.attempts, hooks.received) == ("pending", 0, [])
    switch(True)
    assert one_round(app, clock) == (1, 0)
    (row,) = deliveries_of(app)
    assert (row.status, row.attempts) == ("delivered", 1)


def test_conversions_from_the_api_and_from_the_services_are_announced_once(app, hooks, clock):
    admin = make_admin(app)
    program = make_program(app, admin)
    endpoint = add_endpoint(app, program, admin, hooks.url("/hook"), events=["conversion.created"])
    hooks.secrets["/hook"] = [endpoint.secret]
    merchant = make_merchant(app, program, admin)
    assert merchant.sale("API-1", 5_000).status_code == 201
    assert merchant.sale("API-1", 5_000).headers["Idempotent-Replayed"] == "true"
    with app.app_context():
        report = ConversionRequest(type=ConversionType.SALE, order_id="SVC-1", amount_cents=7_000, currency="USD")
        for _ in range(2):
            record_conversion(db.session, db.session.get(Program, program.id), report, now=utcnow())
        db.session.commit()
        stored = db.session.scalars(select(Conversion.order_id)).all()
    assert sorted(stored) == ["API-1", "SVC-1"]
    clock.now = utcnow()
    assert send_all(app, clock) == (2, 0)
    assert sorted(json.loads(r.body)["data"]["order_id"] for r in hooks.received) == ["API-1", "SVC-1"]


def test_a_success_wakes_deliveries_waiting_out_a_retry_but_not_those_another_sender_holds(app):
    """Waking a claimed delivery would have a second sender claim and send it again while the first still is."""
    admin = make_admin(app)
    program = make_program(app, admin)
    start = utcnow()
    hold = timedelta(seconds=60)
    with app.app_context():
        webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings("https://hooks.example.com/", ("*",)),
            actor=db.session.get(User, admin.id),
            now=start,
            check_url=outbound.check_url,
        )
        for n in range(3):
            webhooks.emit(db.session, program.id, "link.created", {"n": n}, now=start)
        first, held, retried = deliveries.claim_due(db.session, now=start, hold=hold)
        retried = deliveries.keep_claim(db.session, retried, now=start, hold=hold)
        deliveries.record_failed(db.session, retried, error="answered 503", now=start)
        db.session.execute(
            update(Delivery).where(Delivery.id == retried.id).values(next_attempt_at=start + timedelta(hours=1))
        )
        deliveries.record_delivered(db.session, first, status=200, response="", latency_ms=5, now=start)
        db.session.commit()
        due = dict(db.session.execute(select(Delivery.id, Delivery.next_attempt_at)).all())
    assert due[retried.id] == start, "the endpoint answers again: the retry goes now"
    assert due[held.id] == start + hold, "still held by the sender that claimed it"


def test_turning_an_endpoint_on_wakes_what_waits_but_not_what_a_sender_holds(app):
    """Turned off and on while a sender is sending one of its messages: that one stays the sender's, or another
    sender would take it at once and it would arrive twice; the one put back while it was off goes now."""
    admin = make_admin(app)
    program = make_program(app, admin)
    start = utcnow()
    hold = timedelta(seconds=60)
    with app.app_context():
        endpoint = webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings("https://hooks.example.com/", ("*",)),
            actor=db.session.get(User, admin.id),
            now=start,
            check_url=outbound.check_url,
        )
        for n in range(2):
            webhooks.emit(db.session, program.id, "link.created", {"n": n}, now=start)
        held, parked = deliveries.claim_due(db.session, now=start, hold=hold)
        parked = deliveries.keep_claim(db.session, parked, now=start, hold=hold)
        deliveries.park(db.session, parked, now=start)
        actor = db.session.get(User, admin.id)
        webhooks.set_enabled(db.session, endpoint, False, actor=actor, now=start)
        webhooks.set_enabled(db.session, endpoint, True, actor=actor, now=start + timedelta(seconds=1))
        db.session.commit()
        due = dict(db.session.execute(select(Delivery.id, Delivery.next_attempt_at)).all())
    assert due[parked.id] == start + timedelta(seconds=1), "put back while off: it goes now"
    assert due[held.id] == start + hold, "still held by the sender sending it"
