"""Conversions become pending commissions with balanced ledger accruals, once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from affiliate.extensions import db
from affiliate.models import Commission, CommissionPlan, Conversion, ConversionType, User, utcnow
from affiliate.services.accrual import approve, approve_due, reject
from affiliate.services.accrual import evaluate_conversion as accrue
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from affiliate.services.ledger import balance, check
from tests.factories import make_admin, make_affiliate, make_program, make_user


def set_plan(app, program_id: int, **terms) -> None:
    with app.app_context():
        db.session.execute(update(CommissionPlan).where(CommissionPlan.program_id == program_id).values(**terms))
        db.session.commit()


def report(app, program, affiliate_id: int | None, order: str, amount: int = 10_000, **fields) -> int:
    """A stored conversion credited to ``affiliate_id`` (as attribution would), returning its id."""
    status = fields.pop("status", "pending")
    with app.app_context():
        request = ConversionRequest(
            type=fields.pop("type", ConversionType.SALE), order_id=order, amount_cents=amount, currency="USD", **fields
        )
        conversion = record_conversion(db.session, db.session.get(type(program), program.id), request, now=utcnow())
        conversion.conversion.affiliate_id = affiliate_id
        conversion.conversion.status = status
        db.session.commit()
        return conversion.conversion.id


def commissions(app) -> list[Commission]:
    with app.app_context():
        rows = db.session.scalars(select(Commission).order_by(Commission.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def test_a_sale_accrues_a_pending_commission_once(app, runner):
    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=1_000, flat_cents=50)
    alice = make_affiliate(app)
    conversion_id = report(app, program, alice.id, "o-1", 12_345)
    first = runner.invoke(args=["accrue-commissions"])
    assert first.exit_code == 0 and "Accrued 1 commissions for 1 conversions" in first.output
    assert "Accrued 0 commissions" in runner.invoke(args=["accrue-commissions"]).output
    (commission,) = commissions(app)
    assert (commission.affiliate_id, commission.amount_cents, commission.status) == (alice.id, 1_235 + 50, "pending")
    with app.app_context():
        conversion = db.session.get(Conversion, conversion_id)
        assert commission.available_at == conversion.created_at + timedelta(days=30)
        assert balance(db.session, f"affiliate_pending:{alice.id}", "USD") == -1_285
        assert balance(db.session, "commission_expense", "USD") == 1_285
        assert check(db.session) == []
    assert runner.invoke(args=["ledger-check"]).exit_code == 0


def test_the_recruiter_earns_the_second_tier(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=2_000, second_tier_bps=1_000)
    recruiter = make_affiliate(app)
    recruit = make_affiliate(app)
    with app.app_context():
        db.session.get(User, recruit.id).referred_by_id = recruiter.id
        db.session.commit()
        conversion = db.session.get(Conversion, report(app, program, recruit.id, "o-2", 10_000))
        accrue(db.session, conversion, now=utcnow())
        db.session.commit()
    got = {(c.affiliate_id, c.tier_level): c.amount_cents for c in commissions(app)}
    assert got == {(recruit.id, 1): 2_000, (recruiter.id, 2): 200}


def test_nothing_for_rejected_unattributed_or_non_recurring_sales(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000, recurring_months=0)
    alice = make_affiliate(app)
    with app.app_context():
        ids = [
            report(app, program, alice.id, "rej", status="rejected"),
            report(app, program, None, "none"),
            report(app, program, alice.id, "first", customer_external_id="c-1"),
        ]
        later = report(app, program, alice.id, "later", customer_external_id="c-1")
        conversion = db.session.get(Conversion, later)
        conversion.occurred_at = conversion.occurred_at + timedelta(days=40)
        db.session.commit()
        for conversion_id in [*ids, later]:
            accrue(db.session, db.session.get(Conversion, conversion_id), now=utcnow())
        db.session.commit()
    assert [(c.conversion_id, c.amount_cents) for c in commissions(app)] == [(ids[2], 1_000)]


def test_refer_a_friend_rewards_both_sides(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, referrer_reward_cents=500, referee_reward_cents=300)
    referrer = make_user(app, role="member")
    friend = make_user(app, role="member")
    stranger = make_user(app, role="member")  # signed up through the referrer's link, referred by nobody
    with app.app_context():
        db.session.execute(update(User).where(User.id == friend.id).values(referred_by_id=referrer.id))
        db.session.commit()  # before report() writes from an app context of its own
        for member in (friend, stranger):
            conversion_id = report(
                app,
                program,
                referrer.id,
                f"member-{member.id}",
                0,
                type=ConversionType.SIGNUP,
                customer_user_id=member.id,
            )
            accrue(db.session, db.session.get(Conversion, conversion_id), now=utcnow())
            db.session.commit()  # evaluation locks the referrer's row, which the next report's insert checks
    assert {(c.affiliate_id, c.amount_cents) for c in commissions(app)} == {(referrer.id, 500), (friend.id, 300)}


def _accrued(app, program, affiliate, order: str, amount: int = 10_000, status: str = "pending") -> int:
    """Accrue a conversion's one commission and return its id."""
    with app.app_context():
        conversion = db.session.get(Conversion, report(app, program, affiliate.id, order, amount, status=status))
        (commission,) = accrue(db.session, conversion, now=utcnow())
        db.session.commit()
        return commission.id


def test_commissions_are_approved_by_rule_once_the_hold_has_passed(app, runner):
    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    due = _accrued(app, program, alice, "due")
    held = _accrued(app, program, alice, "held")
    with app.app_context():
        # Flagged after it earned (as a conversion accrued before review existed would be): it waits.
        conversion_id = db.session.get(Commission, held).conversion_id
        db.session.execute(update(Conversion).where(Conversion.id == conversion_id).values(status="flagged"))
        db.session.commit()
    assert "Approved 0 commissions" in runner.invoke(args=["approve-due"]).output
    with app.app_context():
        later = utcnow() + timedelta(days=31)
        assert approve_due(db.session, now=later) == 1
        assert approve_due(db.session, now=later) == 0
        assert approve(db.session, db.session.get(Commission, held), now=later) is False, "not by hand either"
        db.session.commit()
        assert db.session.get(Commission, due).status == "approved"
        assert db.session.get(Commission, held).status == "pending", "a flagged conversion waits for review"
        assert balance(db.session, f"affiliate_payable:{alice.id}", "USD") == -1_000
        assert balance(db.session, f"affiliate_pending:{alice.id}", "USD") == -1_000  # the held one
        assert check(db.session) == []


def test_a_rejected_commission_reverses_its_accrual_once(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    commission = _accrued(app, program, alice, "r")
    with app.app_context():
        row = db.session.get(Commission, commission)
        assert reject(db.session, row, now=utcnow(), note="fraud") is True
        assert reject(db.session, row, now=utcnow()) is False
        assert approve(db.session, row, now=utcnow()) is False
        db.session.commit()
        assert balance(db.session, f"affiliate_pending:{alice.id}", "USD") == 0
        assert balance(db.session, "commission_expense", "USD") == 0


def test_partial_refunds_reverse_the_commission_exactly(app, runner):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    commission = _accrued(app, program, alice, "sale-1", 10_001)
    with app.app_context():
        approve(db.session, db.session.get(Commission, commission), now=utcnow())
        db.session.commit()
        sale = db.session.scalar(select(Conversion).where(Conversion.order_id == "sale-1"))
        for refund_id, cents in (("rf-1", 3_333), ("rf-2", 6_668)):
            record_refund(
                db.session,
                sale.program,
                RefundRequest(order_id="sale-1", refund_id=refund_id, amount_cents=cents),
                now=utcnow(),
            )
        db.session.commit()
    first = runner.invoke(args=["accrue-commissions"])
    assert "reversed 1000 cents" in first.output, first.output
    assert "reversed 0 cents" in runner.invoke(args=["accrue-commissions"]).output
    with app.app_context():
        assert db.session.get(Commission, commission).status == "reversed"
        assert balance(db.session, f"affiliate_payable:{alice.id}", "USD") == 0
        assert check(db.session) == []


def test_rejecting_a_conversion_in_review_takes_back_its_commission(app):
    from tests.factories import Auth, csrf_token, make_finance

    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    commission = _accrued(app, program, alice, "flagged-1")
    with app.app_context():
        conversion_id = db.session.get(Commission, commission).conversion_id
        db.session.execute(update(Conversion).where(Conversion.id == conversion_id).values(status="flagged"))
        db.session.commit()
    finance = app.test_client()
    Auth(finance).login(make_finance(app).email)
    page = finance.get("/finance/review/").get_data(as_text=True)
    finance.post(
        "/finance/review/decide",
        data={"ids": conversion_id, "decision": "reject", "note": "stuffed cookies", "csrf_token": csrf_token(page)},
    )
    with app.app_context():
        assert db.session.get(Commission, commission).status == "rejected"
        assert balance(db.session, f"affiliate_pending:{alice.id}", "USD") == 0
        assert check(db.session) == []


def test_the_affiliate_sees_balances_and_commissions_and_nobody_else_does(app):
    from tests.factories import Auth

    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    pending = _accrued(app, program, alice, "earn-1", 10_000)
    _accrued(app, program, alice, "earn-2", 20_000)
    with app.app_context():
        approve(db.session, db.session.get(Commission, pending), now=utcnow())
        db.session.commit()
    browser = app.test_client()
    Auth(browser).login(alice.email)
    page = browser.get("/partner/earnings/").get_data(as_text=True)
    assert "$20.00" in page and "$10.00" in page and "earn-1" in page and "base rate" in page
    other = app.test_client()
    Auth(other).login(bob.email)
    assert "earn-1" not in other.get("/partner/earnings/").get_data(as_text=True)


def test_finance_approves_and_rejects_commissions_from_the_page(app):
    from tests.factories import Auth, csrf_token, make_finance

    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    keep, drop = _accrued(app, program, alice, "keep"), _accrued(app, program, alice, "drop")
    finance = app.test_client()
    Auth(finance).login(make_finance(app).email)
    page = finance.get("/finance/commissions/").get_data(as_text=True)
    assert "2 pending" in page
    token = csrf_token(page)
    refused = finance.post(
        "/finance/commissions/decide",
        data={"ids": drop, "decision": "reject", "csrf_token": token},
        follow_redirects=True,
    )
    assert "Say why" in refused.get_data(as_text=True)
    finance.post("/finance/commissions/decide", data={"ids": keep, "decision": "approve", "csrf_token": token})
    finance.post(
        "/finance/commissions/decide",
        data={"ids": [drop, keep], "decision": "reject", "note": "duplicate", "csrf_token": token},
    )
    with app.app_context():
        assert db.session.get(Commission, keep).status == "approved", "approved ones are no longer rejectable"
        assert db.session.get(Commission, drop).status == "rejected"
        assert balance(db.session, f"affiliate_payable:{alice.id}", "USD") == -1_000
        assert balance(db.session, f"affiliate_pending:{alice.id}", "USD") == 0
        assert check(db.session) == []
