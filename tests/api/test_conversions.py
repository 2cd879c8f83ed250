"""The conversion API end to end: signed, idempotent, validated, attributed."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.ids import new_id
from affiliate.models import ApiKey, Conversion, ConversionType, Program, utcnow
from affiliate.services.api_keys import retire_previous_secret, revoke_key, rotate_secret
from affiliate.services.conversions import (
    ConversionRequest,
    IdempotencyConflict,
    await_click,
    click_in_flight,
    prepare_conversion,
    store_conversion,
)
from tests.api.helpers import click, make_merchant, world
from tests.factories import Auth, Visitor, make_admin


def conversions(app) -> list[Conversion]:
    with app.app_context():
        rows = db.session.scalars(select(Conversion).order_by(Conversion.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def test_signed_sale_is_attributed_to_the_click_and_explained(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click_id = click(shopper, links["alice"].code)
    redirector.recorder.flush()
    response = merchant.sale(
        "order-1", 12_345, click_id=click_id, customer={"external_id": "cus_1", "email": "B@Example.com"}
    )
    assert response.status_code == 201, response.json
    body = response.json["conversion"]
    assert body["amount"] == 12_345 and body["currency"] == "USD" and body["type"] == "sale"
    assert body["attribution"] == {
        "status": "attributed",
        "attributed": True,
        "affiliate_id": people["alice"].id,
        "click_id": click_id,
        "matched_by": "click_id",
        "coupon": None,
        "reasons": [],
    }
    assert body["fraud"] == {"score": 40, "rules": ["too_fast"]}, "a sale the second its click lands is flagged"
    (stored,) = conversions(app)
    assert stored.customer_email == "B@example.com"
    trace = json.loads(stored.decision_trace)
    assert any(line["outcome"] == "won" and line["click_id"] == click_id for line in trace["trace"])


def test_the_same_request_again_returns_the_original_answer(app):
    merchant, _, _ = world(app)
    first = merchant.sale("order-7", 5000)
    again = merchant.sale("order-7", 5000)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert len(conversions(app)) == 1


def test_a_time_with_an_offset_is_answered_in_utc_the_first_time_and_on_every_replay(app):
    merchant, _, _ = world(app)
    moment = (utcnow() - timedelta(hours=2)).replace(microsecond=0)
    india = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    first = merchant.sale("order-ist", 5000, occurred_at=india)
    assert first.status_code == 201
    assert first.json["conversion"]["occurred_at"] == moment.isoformat().replace("+00:00", "Z")
    again = merchant.sale("order-ist", 5000, occurred_at=india)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    same_moment = merchant.sale("order-ist", 5000, occurred_at=moment.isoformat().replace("+00:00", "Z"))
    assert same_moment.status_code == 201, "the same moment written in UTC is the same request, not a 409"
    assert same_moment.json == first.json
    refund = merchant.post("/api/v1/refunds", {"order_id": "order-ist", "amount": 100, "occurred_at": india})
    assert refund.status_code == 201
    assert refund.json["conversion"]["occurred_at"] == first.json["conversion"]["occurred_at"]
    assert len(conversions(app)) == 2


def test_same_order_with_another_payload_is_409_and_changes_nothing(app):
    merchant, _, _ = world(app)
    assert merchant.sale("order-9", 5000).status_code == 201
    response = merchant.sale("order-9", 9999)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "idempotency_conflict"
    (stored,) = conversions(app)
    assert stored.amount_cents == 5000


def test_latest_click_of_the_visitor_wins(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click(shopper, links["alice"].code)
    click(shopper, links["bob"].code)
    redirector.recorder.flush()
    visitor_id = shopper.get_cookie("ct_vid").value
    response = merchant.sale("order-2", 1000, visitor_id=visitor_id)
    assert response.json["conversion"]["attribution"]["affiliate_id"] == people["bob"].id
    assert response.json["conversion"]["attribution"]["matched_by"] == "visitor"


def test_a_sale_without_any_match_is_recorded_unattributed(app):
    merchant, _, _ = world(app)
    response = merchant.sale("order-3", 1000, visitor_id="Z" * 26)
    assert response.status_code == 201
    assert response.json["conversion"]["attribution"]["attributed"] is False


def test_a_bound_customer_stays_with_their_first_affiliate(app, redirector):
    merchant, people, links = world(app)
    alice_shopper, bob_shopper = Visitor(redirector, ip="198.51.100.1"), Visitor(redirector, ip="198.51.100.2")
    first = click(alice_shopper, links["alice"].code)
    later = click(bob_shopper, links["bob"].code)
    redirector.recorder.flush()
    assert merchant.sale("o-1", 1000, click_id=first, customer={"external_id": "cus_9"}).status_code == 201
    response = merchant.sale("o-2", 1000, click_id=later, customer={"external_id": "cus_9"})
    assert response.json["conversion"]["attribution"]["affiliate_id"] == people["alice"].id
    assert response.json["conversion"]["attribution"]["matched_by"] == "binding"


@pytest.mark.parametrize("model", ["last_click", "first_click"])
def test_the_winning_click_is_found_behind_many_later_clicks_of_the_shopper(app, redirector, model):
    """A shopper who clicked Alice's link, then fifty links of another merchant (last click) or of Bob on the
    same program (first click): the click that wins under the program's model is still found."""
    from tests.factories import make_affiliate, make_link, make_program

    admin = make_admin(app)
    program = make_program(app, admin, attribution_model=model)
    crowd_program = make_program(app, admin) if model == "last_click" else program
    alice, crowd = make_affiliate(app), make_affiliate(app)
    first = make_link(app, alice, program)
    later = [make_link(app, crowd, crowd_program) for _ in range(51)]
    shopper = Visitor(redirector)
    click(shopper, first.code)
    for link in later:
        click(shopper, link.code)
    redirector.recorder.flush()
    merchant = make_merchant(app, program, admin)
    answer = merchant.sale("crowded-1", visitor_id=shopper.get_cookie("ct_vid").value)
    assert answer.json["conversion"]["attribution"]["affiliate_id"] == alice.id


# --- authentication and signatures ---


def test_requests_without_a_valid_key_or_signature_are_refused(app):
    merchant, _, _ = world(app)
    body = {"type": "sale", "order_id": "x-1", "amount": 100, "currency": "USD"}
    cases = {
        "no key": merchant.post("/api/v1/conversions", body, headers={"Authorization": ""}),
        "unknown key": merchant.post("/api/v1/conversions", body, headers={"Authorization": "Bearer ct_abcdefgh_nope"}),
        "wrong secret": merchant.post("/api/v1/conversions", body, secret="whsec_wrong"),
        "stale": merchant.post("/api/v1/conversions", body, timestamp=int(time.time()) - 301),
        "future": merchant.post("/api/v1/conversions", body, timestamp=int(time.time()) + 301),
        "no signature": merchant.post("/api/v1/conversions", body, headers={"Clicktrail-Signature": ""}),
    }
    for name, response in cases.items():
        assert response.status_code == 401, name
        assert response.json["error"]["code"], name
    assert conversions(app) == []


def test_a_body_changed_after_signing_is_refused(app):
    merchant, _, _ = world(app)
    data = json.dumps({"type": "sale", "order_id": "x-2", "amount": 100, "currency": "USD"}).encode()
    signed = merchant.post("/api/v1/conversions", None, raw=data, request_id="fixed")
    assert signed.status_code == 201
    tampered = data.replace(b"100", b"900").replace(b"x-2", b"x-3")
    headers = {"Clicktrail-Signature": f"v1={'0' * 64}"}
    assert merchant.post("/api/v1/conversions", None, raw=tampered, headers=headers).status_code == 401
    assert len(conversions(app)) == 1


def test_rotation_accepts_both_secrets_until_the_old_one_is_retired(app):
    merchant, _, _ = world(app)
    old = merchant.secret
    admin = make_admin(app)
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        new = rotate_secret(db.session, key, actor=admin, now=utcnow())
        db.session.commit()
    assert (
        merchant.sale(
            "r-1",
            100,
        ).status_code
        == 201
    )
    assert (
        merchant.post(
            "/api/v1/conversions", {"type": "sale", "order_id": "r-2", "amount": 100, "currency": "USD"}, secret=new
        ).status_code
        == 201
    )
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        retire_previous_secret(db.session, key, actor=admin, now=utcnow())
        db.session.commit()
    assert (
        merchant.post(
            "/api/v1/conversions", {"type": "sale", "order_id": "r-3", "amount": 100, "currency": "USD"}, secret=old
        ).status_code
        == 401
    )
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        revoke_key(db.session, key, actor=admin, now=utcnow())
        db.session.commit()
    assert (
        merchant.post(
            "/api/v1/conversions", {"type": "sale", "order_id": "r-4", "amount": 100, "currency": "USD"}, secret=new
        ).status_code
        == 401
    )
    assert len(conversions(app)) == 2


def test_a_key_only_reports_for_its_own_program(app):
    merchant, _, _ = world(app)
    other = make_merchant(app)
    assert other.sale("shared-order", 100).status_code == 201
    assert merchant.sale("shared-order", 100).status_code == 201
    assert {c.program_id for c in conversions(app)} == {merchant.program.id, other.program.id}


# --- bad input: a clear 4xx that changes nothing ---

VALID = {"type": "sale", "order_id": "v-1", "amount": 100, "currency": "USD"}


def _with(**fields) -> bytes:
    return json.dumps({**VALID, **fields}).encode()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (_with(amount=100.0), 422, None),
        (_with(amount=float("nan")), 400, "non_finite_number"),
        (
            b'{"type": "sale", "order_id": "v-1", "amount": 100, "currency": "USD", "metadata": {"x": 1e400}}',
            400,
            "non_finite_number",
        ),
        (
            b'{"type": "sale", "order_id": "v-1", "order_id": "v-2", "amount": 1, "currency": "USD"}',
            400,
            "duplicate_key",
        ),
        (_with(amount="100"), 422, None),
        (_with(amount=True), 422, None),
        (_with(amount=-5), 422, None),
        (_with(amount=10**12), 422, None),
        (_with(currency="EUR"), 422, "currency_mismatch"),
        (_with(currency="XYZ"), 422, None),
        (_with(type="refund"), 422, None),
        (_with(order_id=""), 422, None),
        (_with(order_id="x" * 129), 422, None),
        (_with(status="approved"), 400, "unknown_field"),
        (_with(affiliate_id=1), 400, "unknown_field"),
        (_with(customer={"external_id": "c", "role": "admin"}), 400, "unknown_field"),
        (_with(occurred_at="2999-01-01T00:00:00Z"), 400, "occurred_in_future"),
        (_with(occurred_at="2024-01-01T00:00:00"), 422, None),
        (_with(occurred_at="yesterday"), 422, None),
        (_with(click_id="short"), 422, None),
        (_with(customer={"email": "nope"}), 422, None),
        (_with(metadata=[1]), 422, None),
        (b"[1, 2]", 400, "not_an_object"),
        (b'{"type": ', 400, "invalid_json"),
        (b"\xff\xfe{}", 400, "invalid_encoding"),
    ],
)
def test_bad_bodies_get_a_reason_and_change_nothing(app, raw, status, code):
    merchant, _, _ = world(app)
    response = merchant.post("/api/v1/conversions", None, raw=raw)
    assert response.status_code == status, response.json
    assert response.is_json and set(response.json["error"]) >= {"code", "message", "status"}
    if code:
        assert response.json["error"]["code"] == code
    assert conversions(app) == []


def test_wrong_content_type_and_oversized_bodies(app):
    merchant, _, _ = world(app)
    form = merchant.post("/api/v1/conversions", VALID, content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and form.json["error"]["code"] == "unsupported_media_type"
    big = json.dumps({**VALID, "metadata": {"blob": "x" * 70_000}}).encode()
    huge = merchant.post("/api/v1/conversions", None, raw=big)
    assert huge.status_code == 413 and huge.is_json
    assert conversions(app) == []


def test_occurred_at_before_the_named_click_is_refused(app, redirector):
    merchant, _, links = world(app)
    click_id = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    before = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = merchant.sale("o-early", 100, click_id=click_id, occurred_at=before)
    assert response.status_code == 400 and response.json["error"]["code"] == "occurred_before_click"


# --- refunds ---


def test_refunds_full_partial_and_never_more_than_the_sale(app):
    merchant, _, _ = world(app)
    assert merchant.sale("s-1", 10_000).status_code == 201
    part = merchant.post("/api/v1/refunds", {"order_id": "s-1", "refund_id": "rf-1", "amount": 2_500})
    assert part.status_code == 201 and part.json["conversion"]["amount"] == 2_500
    assert (
        merchant.post("/api/v1/refunds", {"order_id": "s-1", "refund_id": "rf-1", "amount": 2_500}).status_code == 201
    )
    too_much = merchant.post("/api/v1/refunds", {"order_id": "s-1", "refund_id": "rf-2", "amount": 8_000})
    assert too_much.status_code == 422 and too_much.json["error"]["code"] == "refund_exceeds_sale"
    rest = merchant.post("/api/v1/refunds", {"order_id": "s-1", "refund_id": "rf-3"})
    assert rest.status_code == 201 and rest.json["conversion"]["amount"] == 7_500
    unknown = merchant.post("/api/v1/refunds", {"order_id": "nope"})
    assert unknown.status_code == 422 and unknown.json["error"]["code"] == "unknown_order"
    refunds = [c for c in conversions(app) if c.type == "refund"]
    assert sorted(r.amount_cents for r in refunds) == [2_500, 7_500]


# --- exactly one conversion under concurrency ---


def test_fifty_concurrent_identical_requests_make_one_conversion(app):
    merchant, _, _ = world(app)
    body = json.dumps({"type": "sale", "order_id": "race-1", "amount": 4200, "currency": "USD"}).encode()
    answers: list[int] = []
    start = threading.Barrier(50)

    def send() -> None:
        client = app.test_client()
        start.wait()
        other = type(merchant)(client, merchant.program, merchant.token, merchant.secret)
        answers.append(other.post("/api/v1/conversions", None, raw=body, request_id="same").status_code)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [201] * 50
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversion)) == 1


def test_an_order_stored_between_reading_and_writing_is_a_replay_or_a_409(app):
    merchant, _, _ = world(app)
    report = ConversionRequest(type=ConversionType.SALE, order_id="between-1", amount_cents=4200, currency="USD")
    with app.app_context():
        program = db.session.get(Program, merchant.program.id)
        # All three are prepared before any is stored, as by requests that read at the same time.
        first, same, other = (
            prepare_conversion(db.session, program, sent, now=utcnow())
            for sent in (report, report, replace(report, amount_cents=4300))
        )
        stored = store_conversion(db.session, first)
        replayed = store_conversion(db.session, same)
        assert stored.created and not replayed.created and replayed.conversion.id == stored.conversion.id
        with pytest.raises(IdempotencyConflict):
            store_conversion(db.session, other)
        db.session.commit()
    assert [(c.order_id, c.amount_cents) for c in conversions(app)] == [("between-1", 4200)]


# --- the trace on the conversion's page ---


def test_trace_page_for_staff_and_for_the_credited_affiliate_only(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click(shopper, links["bob"].code)
    won = click(shopper, links["alice"].code)
    redirector.recorder.flush()
    conversion_id = merchant.sale("t-1", 100, click_id=won, visitor_id=shopper.get_cookie("ct_vid").value).json[
        "conversion"
    ]["id"]
    staff = app.test_client()
    Auth(staff).login(make_admin(app).email)
    page = staff.get(f"/admin/conversions/{conversion_id}").get_data(as_text=True)
    assert "Alice" in page and "Bob" in page and "click id" in page
    alice = app.test_client()
    Auth(alice).login(people["alice"].email)
    own = alice.get(f"/partner/conversions/{conversion_id}")
    assert own.status_code == 200
    # The page's hidden CSRF token is random text that can hold any three letters: read the page without it.
    text = re.sub(r'<input[^>]*type="hidden"[^>]*>', "", own.get_data(as_text=True))
    assert "Another partner" in text and "Bob" not in text
    bob = app.test_client()
    Auth(bob).login(people["bob"].email)
    assert bob.get(f"/partner/conversions/{conversion_id}").status_code == 404


def test_a_sale_seconds_after_its_click_waits_for_the_click_to_be_stored(app):
    """The redirector answers once a click is logged; its row arrives a moment later, and the sale waits for it."""
    fresh, old = new_id(), "01M0000000" + "a" * 22
    with app.app_context():
        assert click_in_flight(db.session, fresh, now=utcnow())
        assert not click_in_flight(db.session, old, now=utcnow()), "an old or unknown id waits not at all"
        assert not click_in_flight(db.session, None, now=utcnow())
        start, naps = utcnow(), []
        await_click(db.session, fresh, clock=lambda: start + timedelta(seconds=sum(naps)), sleep=naps.append)
        assert 4.9 <= sum(naps) <= 5.1, "at most CLICK_PATIENCE (5 s) for a click that never comes"
