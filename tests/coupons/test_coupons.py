"""Coupon attribution through the conversion API, as a podcast listener's checkout reaches it: a code and no
click, a code and another affiliate's click under both precedences, codes that must credit no one, and the
coupon_leak rule. Each checks what the merchant's answer, the stored conversion and its trace say."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Conversion, Coupon, Program, User, utcnow
from affiliate.services import coupons
from affiliate.services.enrollment import decide
from tests.api.helpers import click, make_merchant
from tests.factories import Visitor, make_admin, make_affiliate, make_link, make_program


@pytest.fixture
def shop(app):
    """A program with Alice (code ALICE10) and Bob (a link), and the merchant's key; click wins by default."""
    admin = make_admin(app)
    program = make_program(app, admin)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    links = {"alice": make_link(app, alice, program), "bob": make_link(app, bob, program)}
    coupon = add_coupon(app, program, alice, admin, "ALICE10")
    return {
        "admin": admin,
        "program": program,
        "alice": alice,
        "bob": bob,
        "links": links,
        "coupon": coupon,
        "merchant": make_merchant(app, program, admin),
    }


def add_coupon(app, program: Program, affiliate: User, admin: User, code: str, **settings) -> Coupon:
    with app.app_context():
        coupon = coupons.create(
            db.session,
            db.session.get(Program, program.id),
            db.session.get(User, affiliate.id),
            coupons.CouponSettings(code, **settings),
            actor=db.session.get(User, admin.id),
            now=utcnow(),
        )
        db.session.commit()
        db.session.refresh(coupon)
        db.session.expunge(coupon)
    return coupon


def remove(program: Program, affiliate: User, admin: User) -> None:
    """Remove the affiliate from the program, as an admin does from the program's enrollment page."""
    decide(
        db.session,
        db.session.get(Program, program.id),
        affiliate.id,
        "remove",
        actor_id=admin.id,
        reason="Brand bidding",
        now=utcnow(),
    )


def clicked(redirector, code: str, ip: str = "203.0.113.7") -> str:
    """A shopper's click on a link, stored before the sale is reported."""
    click_id = click(Visitor(redirector, ip=ip), code)
    redirector.recorder.flush()
    return click_id


def stored(app, order_id: str) -> tuple[Conversion, dict]:
    with app.app_context():
        conversion = db.session.scalar(select(Conversion).where(Conversion.order_id == order_id))
        db.session.expunge(conversion)
    return conversion, json.loads(conversion.decision_trace)


def code_line(trace: dict) -> dict:
    [line] = [line for line in trace["trace"] if line["matched_by"] == "coupon"]
    return line


def test_a_coupon_and_no_click_credits_its_affiliate_whatever_the_case_typed(app, shop):
    answer = shop["merchant"].sale("order-1", 4000, coupon="alice10")
    assert answer.status_code == 201, answer.get_json()
    attribution = answer.get_json()["conversion"]["attribution"]
    assert attribution == {
        "status": "attributed",
        "attributed": True,
        "affiliate_id": shop["alice"].id,
        "click_id": None,
        "matched_by": "coupon",
        "coupon": "ALICE10",
        "reasons": [],
    }
    conversion, trace = stored(app, "order-1")
    assert conversion.affiliate_id == shop["alice"].id and conversion.coupon_id == shop["coupon"].id
    assert conversion.coupon_with_click is False
    assert trace["code"] == {"kind": "coupon", "code": "ALICE10", "id": shop["coupon"].id, "precedence": "click"}
    assert code_line(trace)["outcome"] == "won" and code_line(trace)["reason"] == "no_click"
    assert "ALICE10" in trace["summary"]


@pytest.mark.parametrize(("precedence", "winner"), [("click", "bob"), ("code", "alice")])
def test_a_coupon_and_another_affiliates_click_follow_the_programs_precedence(app, redirector, precedence, winner):
    admin = make_admin(app)
    program = make_program(app, admin, code_precedence=precedence)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    add_coupon(app, program, alice, admin, "ALICE10")
    bobs_link = make_link(app, bob, program)
    merchant = make_merchant(app, program, admin)
    click_id = clicked(redirector, bobs_link.code)

    answer = merchant.sale("order-2", 4000, coupon="ALICE10", click_id=click_id)
    assert answer.status_code == 201
    credited = {"alice": alice.id, "bob": bob.id}[winner]
    assert answer.get_json()["conversion"]["attribution"]["affiliate_id"] == credited
    conversion, trace = stored(app, "order-2")
    assert trace["code"]["precedence"] == precedence
    bobs_line = next(line for line in trace["trace"] if line["click_id"] == click_id)
    if winner == "bob":
        assert conversion.click_id is not None and bobs_line["outcome"] == "won"
        assert (code_line(trace)["outcome"], code_line(trace)["reason"]) == ("lost", "click_wins")
    else:
        assert conversion.click_id is None and (bobs_line["outcome"], bobs_line["reason"]) == ("lost", "code_wins")
        assert (code_line(trace)["outcome"], code_line(trace)["reason"]) == ("won", "code_wins")
    assert conversion.coupon_with_click is False, "Alice had no click of her own"


def test_a_coupon_whose_affiliate_also_has_the_winning_click_credits_the_click(app, redirector, shop):
    click_id = clicked(redirector, shop["links"]["alice"].code)
    answer = shop["merchant"].sale("order-3", 4000, coupon="ALICE10", click_id=click_id)
    assert answer.get_json()["conversion"]["attribution"]["matched_by"] == "click_id"
    conversion, trace = stored(app, "order-3")
    assert conversion.click_id is not None and conversion.coupon_with_click is True
    assert code_line(trace)["reason"] == "same_affiliate"


@pytest.mark.parametrize("state", ["unknown", "retired", "requested", "suspended-affiliate", "removed-affiliate"])
def test_a_code_that_is_not_usable_credits_no_one_and_says_why(app, shop, state):
    code = "ALICE10"
    with app.app_context():
        coupon = db.session.get(Coupon, shop["coupon"].id)
        if state == "retired":
            coupons.retire(db.session, coupon, actor=db.session.get(User, shop["admin"].id), now=utcnow())
        elif state == "requested":
            coupon.status = "requested"
        elif state == "suspended-affiliate":
            db.session.get(User, shop["alice"].id).status = "suspended"
        elif state == "removed-affiliate":
            remove(shop["program"], shop["alice"], shop["admin"])
        else:
            code = "NOBODY99"
        db.session.commit()
    answer = shop["merchant"].sale("order-4", 4000, coupon=code)
    assert answer.status_code == 201
    assert answer.get_json()["conversion"]["attribution"]["attributed"] is False
    conversion, trace = stored(app, "order-4")
    assert conversion.affiliate_id is None and conversion.coupon_id is None
    reason = {
        "unknown": "code_unknown",
        "retired": "code_not_usable",
        "requested": "code_not_usable",
        "suspended-affiliate": "code_affiliate_inactive",
        "removed-affiliate": "code_affiliate_inactive",
    }[state]
    assert (code_line(trace)["outcome"], code_line(trace)["reason"]) == ("ignored", reason)


@pytest.mark.parametrize("value", ["", "a b", "x" * 41, "<script>", 12, ["ALICE10"], "ALICE10;DROP"])
def test_a_malformed_coupon_is_a_422_and_stores_nothing(app, shop, value):
    answer = shop["merchant"].sale("order-5", 4000, coupon=value)
    assert answer.status_code == 422 and answer.get_json()["error"]["field"] == "coupon"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversion)) == 0


def test_codes_are_unique_per_program_whatever_their_case_and_free_in_another_program(app, shop):
    with pytest.raises(coupons.CouponError, match="taken"):
        add_coupon(app, shop["program"], shop["bob"], shop["admin"], "alice10")
    elsewhere = make_program(app, shop["admin"])
    assert add_coupon(app, elsewhere, shop["bob"], shop["admin"], "alice10").code_key == "alice10"
    for bad in ("ab", "has space", "x" * 41):
        with pytest.raises(coupons.CouponError):
            add_coupon(app, shop["program"], shop["bob"], shop["admin"], bad)


def test_a_coupon_used_mostly_without_its_affiliates_clicks_is_flagged_with_the_evidence(app, shop):
    # Ten conversions with the code: the tenth reaches the rule's minimum, all ten without Alice's clicks.
    for n in range(9):
        assert shop["merchant"].sale(f"leak-{n}", 1000, coupon="ALICE10").get_json()["conversion"]["status"] == (
            "pending"
        )
    tenth = shop["merchant"].sale("leak-9", 1000, coupon="ALICE10").get_json()["conversion"]
    assert tenth["status"] == "flagged"
    conversion, _ = stored(app, "leak-9")
    [fired] = [reason for reason in json.loads(conversion.fraud_reasons) if reason["rule"] == "coupon_leak"]
    assert "10 of the 10 conversions with coupon ALICE10" in fired["evidence"]


def test_a_coupon_used_with_its_affiliates_own_clicks_is_not_a_leak(app, redirector, shop):
    for n in range(10):
        click_id = clicked(redirector, shop["links"]["alice"].code, ip=f"203.0.113.{n + 10}")
        answer = shop["merchant"].sale(f"fair-{n}", 1000, coupon="ALICE10", click_id=click_id)
        assert answer.status_code == 201
    conversion, _ = stored(app, "fair-9")
    assert "coupon_leak" not in (conversion.fraud_reasons or "")


def test_an_affiliate_removed_from_the_program_earns_by_none_of_their_earlier_clicks_codes_or_customers(
    app, redirector, shop
):
    """Removal stops the earning, not only the links: a click made before it, a code made before it, a customer
    bound before it and a code waiting for approval all credit nobody afterwards, and each says why."""
    before = clicked(redirector, shop["links"]["alice"].code)
    assert (
        shop["merchant"].sale("bound-1", 4000, coupon="ALICE10", customer={"external_id": "cus-1"}).status_code == 201
    )
    with app.app_context():
        requested = coupons.create(
            db.session,
            db.session.get(Program, shop["program"].id),
            db.session.get(User, shop["alice"].id),
            coupons.CouponSettings("ALICE20"),
            actor=db.session.get(User, shop["alice"].id),
            now=utcnow(),
            requested=True,
        )
        remove(shop["program"], shop["alice"], shop["admin"])
        db.session.commit()
        with pytest.raises(coupons.CouponError, match="no longer promotes"):
            coupons.decide(db.session, requested, True, actor=db.session.get(User, shop["admin"].id), now=utcnow())
    reasons = {}
    for order, fields in {
        "by-click": {"click_id": before},
        "by-coupon": {"coupon": "ALICE10"},
        "by-binding": {"customer": {"external_id": "cus-1"}},
    }.items():
        answer = shop["merchant"].sale(order, 4000, **fields)
        assert answer.status_code == 201
        attribution = answer.get_json()["conversion"]["attribution"]
        assert attribution["attributed"] is False, order
        reasons[order] = attribution["reasons"]
    assert reasons == {
        "by-click": ["affiliate_inactive"],
        "by-coupon": ["code_affiliate_inactive"],
        "by-binding": ["binding_affiliate_inactive"],
    }
    _, trace = stored(app, "by-click")
    assert "removed from it" in trace["trace"][0]["detail"]


def test_a_paused_program_records_conversions_and_credits_no_one_until_it_is_resumed(app, redirector, shop):
    """Pausing a program stops new conversions earning: a sale with the affiliate's click and coupon is recorded
    (the merchant's record stays whole) and credits nobody, saying so; once resumed, sales earn again."""
    click_id = clicked(redirector, shop["links"]["alice"].code)
    with app.app_context():
        db.session.get(Program, shop["program"].id).status = "paused"
        db.session.commit()
    answer = shop["merchant"].sale("paused-1", 4000, coupon="ALICE10", click_id=click_id)
    assert answer.status_code == 201
    attribution = answer.get_json()["conversion"]["attribution"]
    assert (attribution["attributed"], attribution["reasons"]) == (False, ["program_paused"])
    conversion, trace = stored(app, "paused-1")
    assert conversion.affiliate_id is None and conversion.click_id is None and conversion.coupon_id is None
    assert trace["summary"].startswith("The program is paused")
    assert {line["outcome"] for line in trace["trace"]} == {"lost"}
    with app.app_context():
        db.session.get(Program, shop["program"].id).status = "active"
        db.session.commit()
    resumed = shop["merchant"].sale("resumed-1", 4000, coupon="ALICE10", click_id=click_id)
    assert resumed.get_json()["conversion"]["attribution"]["affiliate_id"] == shop["alice"].id


def test_a_stripe_promotion_code_belongs_to_one_live_coupon(app, shop):
    """A checkout using the promotion code credits its coupon's affiliate: two live coupons with one code would
    leave the newest to take every sale. A retired coupon's code may be given to another."""
    add_coupon(app, shop["program"], shop["alice"], shop["admin"], "ALICE15", stripe_promotion_code="promo_SPRING")
    with pytest.raises(coupons.CouponError, match="already the coupon ALICE15"):
        add_coupon(app, shop["program"], shop["bob"], shop["admin"], "BOB10", stripe_promotion_code="promo_SPRING")
    bob10 = add_coupon(app, shop["program"], shop["bob"], shop["admin"], "BOB10")
    with app.app_context():
        admin = db.session.get(User, shop["admin"].id)
        with pytest.raises(coupons.CouponError, match="already the coupon ALICE15"):
            coupons.update(db.session, db.session.get(Coupon, bob10.id), discount_text=None,
                           stripe_promotion_code="promo_SPRING", actor=admin, now=utcnow())  # fmt: skip
        db.session.rollback()
        alice15 = db.session.scalar(select(Coupon).where(Coupon.code == "ALICE15"))
        coupons.retire(db.session, alice15, actor=admin, now=utcnow())
        coupons.update(db.session, db.session.get(Coupon, bob10.id), discount_text=None,
                       stripe_promotion_code="promo_SPRING", actor=admin, now=utcnow())  # fmt: skip
        db.session.commit()
        assert coupons.by_promotion_code(db.session, shop["program"].id, "promo_SPRING").code == "BOB10"
    elsewhere = make_program(app, shop["admin"])
    assert add_coupon(app, elsewhere, shop["alice"], shop["admin"], "ALICE15", stripe_promotion_code="promo_SPRING")
