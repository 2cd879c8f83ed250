"""The rules of docs/money.md that the reference model cannot see from outside: keys, bounds, holds, checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from affiliate.extensions import db
from affiliate.models import Commission, Conversion, ConversionType, LedgerEntry, Payout, PayoutBatch, User, utcnow
from affiliate.services import accrual, money_checks, review
from affiliate.services.commissions import PlanTerms, TierRate
from affiliate.services.conversions import (
    ConversionError,
    ConversionRequest,
    OutOfRange,
    RefundRequest,
    record_conversion,
    record_refund,
)
from affiliate.services.ledger import Leg, post
from affiliate.services.plans import PlanError, save_plan
from tests.factories import make_admin, make_affiliate, make_program, make_user
from tests.money.test_accrual import report, set_plan


def run_jobs(app, now=None) -> accrual.Tally:
    with app.app_context():
        tally = accrual.run(db.session, now=now or utcnow())
        db.session.commit()
        return tally


def own(app, conversion_id: int) -> int:
    """The gross tier-1 commissions of a conversion (its earning and raises)."""
    with app.app_context():
        rows = db.session.scalars(
            select(Commission.amount_cents).where(Commission.conversion_id == conversion_id, Commission.tier_level == 1)
        )
        return sum(rows)


def problems(app) -> list[str]:
    with app.app_context():
        return [problem.invariant for problem in money_checks.check(db.session)]


def refund(app, program, order: str, refund_id: str | None = None, amount: int | None = None, **fields):
    with app.app_context():
        program = db.session.get(type(program), program.id)
        request = RefundRequest(order_id=order, refund_id=refund_id, amount_cents=amount, **fields)
        recorded = record_refund(db.session, program, request, now=fields.get("now", utcnow()))
        db.session.commit()
        return recorded.conversion.id


def test_a_refund_id_never_collides_with_another_orders_id(app):
    program = make_program(app, make_admin(app))
    alice = make_affiliate(app)
    report(app, program, alice.id, "A", 10_000)
    report(app, program, alice.id, "B", 10_000)
    refund(app, program, "A", refund_id="B", amount=1_000)
    full_b = refund(app, program, "B")  # before: 409, as "B" was taken by A's refund
    with app.app_context():
        assert db.session.get(Conversion, full_b).amount_cents == 10_000
    again = refund(app, program, "A", refund_id="B", amount=1_000)
    with app.app_context():
        assert db.session.get(Conversion, again).refund_of_id != db.session.get(Conversion, full_b).refund_of_id


def test_back_dated_and_future_reports_are_refused_within_documented_bounds(app):
    program = make_program(app, make_admin(app), attribution_window_days=30)
    now = utcnow()
    with app.app_context():
        program = db.session.get(type(program), program.id)
        for occurred_at, code in (
            (datetime(1, 1, 1, tzinfo=UTC), "occurred_too_early"),
            (now - timedelta(days=31), "occurred_too_early"),
            (now + timedelta(minutes=6), "occurred_in_future"),
        ):
            request = ConversionRequest(
                type="sale",
                order_id=f"bd-{code}-{occurred_at:%s}",
                amount_cents=100,
                currency="USD",
                occurred_at=occurred_at,
            )
            with pytest.raises(OutOfRange) as refused:
                record_conversion(db.session, program, request, now=now)
            assert refused.value.code == code and refused.value.status == 400
        db.session.rollback()
        kept = ConversionRequest(
            type="sale", order_id="bd-ok", amount_cents=100, currency="USD", occurred_at=now - timedelta(days=29)
        )
        record_conversion(db.session, program, kept, now=now)
        db.session.commit()
        with pytest.raises(OutOfRange):
            record_refund(
                db.session, program, RefundRequest(order_id="bd-ok", occurred_at=now - timedelta(days=30)), now=now
            )


def test_holds_count_from_when_the_conversion_was_reported(app):
    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    late = report(app, program, alice.id, "late", 10_000, occurred_at=utcnow() - timedelta(days=29))
    run_jobs(app)
    with app.app_context():
        (commission,) = db.session.scalars(select(Commission).where(Commission.conversion_id == late))
        conversion = db.session.get(Conversion, late)
        assert commission.available_at == conversion.created_at + timedelta(days=30)
        assert accrual.approve_due(db.session, now=utcnow() + timedelta(days=2)) == 0


def test_a_plan_change_pays_no_conversion_evaluated_before_it(app):
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    alice = make_affiliate(app)
    signup = report(app, program, alice.id, "s-1", 0, type=ConversionType.SIGNUP)
    tiny = report(app, program, alice.id, "tiny", 1)
    assert run_jobs(app).commissions == 0
    with app.app_context():
        now = utcnow()
        save_plan(
            db.session,
            program.id,
            PlanTerms(flat_cents=500, percent_bps=1_000, recurring_months=None),
            effective_from=now,
            actor_id=admin.id,
            now=now,
        )
        db.session.commit()
    assert run_jobs(app).commissions == 0, "both were evaluated once, at 0"
    assert own(app, signup) == own(app, tiny) == 0
    after = report(app, program, alice.id, "s-2", 0, type=ConversionType.SIGNUP)
    run_jobs(app)
    assert own(app, after) == 500
    assert problems(app) == []


def test_plans_refuse_terms_that_cannot_be_paid(app):
    program = make_program(app, make_admin(app))
    with app.app_context():
        for terms in (
            PlanTerms(percent_bps=10_001),
            PlanTerms(flat_cents=-1),
            PlanTerms(tiers=(TierRate(3, 100, 0), TierRate(3, 200, 0))),
            PlanTerms(tier_basis="weekly"),
        ):
            with pytest.raises(PlanError):
                save_plan(db.session, program.id, terms, effective_from=utcnow(), actor_id=None, now=utcnow())
        with pytest.raises(PlanError):
            save_plan(
                db.session,
                program.id,
                PlanTerms(),
                effective_from=utcnow() - timedelta(days=1),
                actor_id=None,
                now=utcnow(),
            )


def test_a_first_sale_that_was_rejected_does_not_make_the_next_one_a_repeat(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000, recurring_months=0)
    alice = make_affiliate(app)
    report(
        app,
        program,
        alice.id,
        "first",
        10_000,
        customer_external_id="c",
        status="rejected",
        occurred_at=utcnow() - timedelta(days=1),
    )
    report(
        app, program, None, "unattributed", 10_000, customer_external_id="c", occurred_at=utcnow() - timedelta(hours=12)
    )
    second = report(app, program, alice.id, "second", 10_000, customer_external_id="c")
    run_jobs(app)
    assert own(app, second) == 1_000


def test_recurring_months_count_to_the_same_time_of_day(app):
    program = make_program(app, make_admin(app), attribution_window_days=60)
    set_plan(app, program.id, percent_bps=1_000, recurring_months=1)
    alice = make_affiliate(app)
    now = utcnow()
    first_at = now - timedelta(days=40)
    first = report(app, program, alice.id, "m-1", 10_000, customer_external_id="c")
    with app.app_context():
        db.session.execute(update(Conversion).where(Conversion.id == first).values(occurred_at=first_at))
        db.session.commit()
    from affiliate.services.commissions import add_months

    boundary = add_months(first_at, 1)
    inside = report(
        app, program, alice.id, "m-2", 10_000, customer_external_id="c", occurred_at=boundary - timedelta(seconds=1)
    )
    outside = report(app, program, alice.id, "m-3", 10_000, customer_external_id="c", occurred_at=boundary)
    run_jobs(app)
    assert (own(app, inside), own(app, outside)) == (1_000, 0)


def test_a_referee_reward_is_not_part_of_the_members_own_volume(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, referee_reward_cents=300, referrer_reward_cents=500, tier_basis="count")
    referrer = make_user(app, role="member")
    member = make_user(app, role="member")
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO commission_tiers (plan_id, threshold, percent_bps, flat_cents) "
                "SELECT id, 2, 0, 1000 FROM commission_plans WHERE program_id = :p"
            ),
            {"p": program.id},
        )
        db.session.commit()
    report(app, program, referrer.id, f"member-{member.id}", 0, type=ConversionType.SIGNUP, customer_user_id=member.id)
    friend = make_user(app, role="member")
    theirs = report(
        app, program, member.id, f"member-{friend.id}", 0, type=ConversionType.SIGNUP, customer_user_id=friend.id
    )
    run_jobs(app)
    with app.app_context():
        flat = db.session.scalar(
            select(Commission.amount_cents).where(Commission.conversion_id == theirs, Commission.kind == "earning")
        )
    assert flat is None, "the member's first own signup is below the 2-signup tier: their reward was not a signup"


def test_count_marginal_tiers_pay_the_conversion_that_reaches_the_threshold(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000, tier_scope="marginal")
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO commission_tiers (plan_id, threshold, percent_bps, flat_cents) "
                "SELECT id, 3, 2000, 0 FROM commission_plans WHERE program_id = :p"
            ),
            {"p": program.id},
        )
        db.session.commit()
    alice = make_affiliate(app)
    sales = [report(app, program, alice.id, f"cm-{n}", 10_000) for n in range(4)]
    run_jobs(app)
    assert [own(app, sale) for sale in sales] == [1_000, 1_000, 2_000, 2_000]


def test_a_flagged_conversion_earns_once_review_approves_it_and_never_when_rejected(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    kept = report(app, program, alice.id, "fl-1", 10_000, status="flagged")
    dropped = report(app, program, alice.id, "fl-2", 10_000, status="flagged")
    run_jobs(app)
    assert own(app, kept) == own(app, dropped) == 0
    with app.app_context():
        assert review.decide(db.session, [kept], "approve", actor_id=None, note=None, now=utcnow()) == [kept]
        assert review.decide(db.session, [dropped], "reject", actor_id=None, note="bot", now=utcnow()) == [dropped]
        db.session.commit()
    run_jobs(app)
    assert (own(app, kept), own(app, dropped)) == (1_000, 0)


def test_rejecting_a_paid_conversion_reverses_it_below_zero(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    sale = report(app, program, alice.id, "paid-1", 10_000)
    run_jobs(app)
    refund(app, program, "paid-1", amount=2_500)
    run_jobs(app)
    with app.app_context():
        assert accrual.approve_due(db.session, now=utcnow()) == 1
        db.session.execute(update(Commission).where(Commission.conversion_id == sale).values(status="paid"))
        review.decide(db.session, [sale], "reject", actor_id=None, note="chargeback fraud", now=utcnow(), reopen=True)
        db.session.commit()
        (commission,) = db.session.scalars(select(Commission).where(Commission.conversion_id == sale))
        assert commission.status == "reversed"
        from affiliate.services.ledger import balance

        assert balance(db.session, f"affiliate_payable:{alice.id}", "USD") == 0
        assert balance(db.session, "commission_expense", "USD") == 0
    assert problems(app) == []


def test_fraud_found_after_approval_is_rejected_from_the_conversion_page_and_never_paid(app):
    from affiliate.services.ledger import balance
    from tests.factories import Auth, csrf_token, make_finance

    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    sale = report(app, program, alice.id, "late-fraud", 10_000)
    run_jobs(app)
    with app.app_context():
        assert accrual.approve_due(db.session, now=utcnow()) == 1
        db.session.commit()
    finance = app.test_client()
    Auth(finance).login(make_finance(app).email)
    page = finance.get(f"/admin/conversions/{sale}").get_data(as_text=True)
    assert "Reject as fraud" in page
    token = csrf_token(page)
    unexplained = finance.post(f"/admin/conversions/{sale}/reject", data={"csrf_token": token}, follow_redirects=True)
    assert "Say why" in unexplained.get_data(as_text=True)
    rejected = finance.post(
        f"/admin/conversions/{sale}/reject", data={"note": "stolen card", "csrf_token": token}, follow_redirects=True
    )
    assert "commissions were taken back" in rejected.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Conversion, sale).status == "rejected"
        (commission,) = db.session.scalars(select(Commission).where(Commission.conversion_id == sale))
        assert commission.status == "reversed"
        assert balance(db.session, f"affiliate_payable:{alice.id}", "USD") == 0
    assert "Reject as fraud" not in finance.get(f"/admin/conversions/{sale}").get_data(as_text=True)
    assert problems(app) == []


def _broken(app, setup) -> list[str]:
    with app.app_context():
        setup(db.session)
        db.session.commit()
    return problems(app)


def test_ledger_check_finds_each_wrong_amount_on_purpose(app, runner):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    sale = report(app, program, alice.id, "chk-1", 10_000)
    run_jobs(app)
    refund(app, program, "chk-1", amount=5_000)
    run_jobs(app)
    assert problems(app) == [] and runner.invoke(args=["ledger-check"]).exit_code == 0
    with app.app_context():
        commission_id = db.session.scalar(select(Commission.id).where(Commission.conversion_id == sale))

    def over_reverse(session):
        post(
            session,
            "reversal",
            f"refund:0:commission:{commission_id}",
            [
                Leg(f"affiliate_pending:{alice.id}", 1, "USD", alice.id),
                Leg("commission_expense", -1, "USD"),
            ],
            now=utcnow(),
        )

    assert "reversal_is_refunded_share" in _broken(app, over_reverse)
    result = runner.invoke(args=["ledger-check"])
    assert result.exit_code == 1 and "reversal_is_refunded_share" in result.output

    def reject_silently(session):
        session.execute(update(Conversion).where(Conversion.id == sale).values(status="rejected"))

    assert "rejected_earns_nothing" in _broken(app, reject_silently)

    def forget_evaluation(session):
        session.execute(update(Conversion).where(Conversion.id == sale).values(evaluated_at=None))

    assert "evaluated_once" in _broken(app, forget_evaluation)

    def refund_too_much(session):
        session.execute(update(Conversion).where(Conversion.refund_of_id == sale).values(amount_cents=20_000))

    assert "refunds_within_sale" in _broken(app, refund_too_much)

    def commission_without_accrual(session):
        session.add(
            Commission(
                affiliate_id=alice.id,
                program_id=program.id,
                conversion_id=sale,
                tier_level=1,
                kind="raise",
                step=9,
                rule="forged",
                amount_cents=1,
                currency="USD",
                status="pending",
                available_at=utcnow(),
            )
        )

    assert "accrued_once" in _broken(app, commission_without_accrual)


def test_ledger_check_finds_a_commission_linked_to_a_payout_not_its_own(app, runner):
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    sale = report(app, program, alice.id, "link-1", 10_000)
    run_jobs(app)
    with app.app_context():
        batch = PayoutBatch(currency="USD", created_by_id=admin.id, created_at=utcnow())
        db.session.add(batch)
        db.session.flush()
        bobs = Payout(batch_id=batch.id, affiliate_id=bob.id, amount_cents=100, currency="USD", method="paypal",
                      destination="bob@example.com", created_at=utcnow())  # fmt: skip
        db.session.add(bobs)
        db.session.commit()
        bobs_id = bobs.id
    assert problems(app) == []

    def link_to(payout_id):
        def setup(session):
            session.execute(update(Commission).where(Commission.conversion_id == sale).values(payout_id=payout_id))

        return setup

    assert "linked_to_own_payout" in _broken(app, link_to(bobs_id))
    result = runner.invoke(args=["ledger-check"])
    assert result.exit_code == 1 and "linked_to_own_payout" in result.output
    assert "linked_to_own_payout" in _broken(app, link_to(bobs_id + 1000))
    assert "linked_to_own_payout" not in _broken(app, link_to(None))


def test_concurrent_style_double_refund_is_refused_even_when_the_first_is_unprocessed(app):
    program = make_program(app, make_admin(app))
    alice = make_affiliate(app)
    report(app, program, alice.id, "two", 10_000)
    refund(app, program, "two", refund_id="r1", amount=6_000)
    with pytest.raises(ConversionError) as refused:
        refund(app, program, "two", refund_id="r2", amount=6_000)
    assert refused.value.code == "refund_exceeds_sale"
    with app.app_context():
        assert db.session.scalar(select(User.id).where(User.id == alice.id)) == alice.id
        assert not db.session.scalars(select(LedgerEntry)).all()


@pytest.mark.parametrize(
    ("other_plan", "bound_for_days"),
    [
        ("none", 30),  # the program's plan does not recur: one attribution window
        ("another_group_for_life", 30),  # a group Alice is not in recurs for life: not her plan
        ("alice_own_for_a_year", 365),  # Alice's own plan recurs 12 months: so does her binding
    ],
)
def test_a_customer_is_bound_for_the_recurring_period_of_their_affiliates_plan(app, other_plan, bound_for_days):
    from affiliate.services import groups
    from affiliate.services.conversions import find_binding

    admin = make_admin(app)
    program = make_program(app, admin, attribution_window_days=30)
    set_plan(app, program.id, percent_bps=1_000, recurring_months=0)
    alice = make_affiliate(app)
    from_now = utcnow()
    with app.app_context():
        if other_plan == "another_group_for_life":
            vip = groups.create_group(db.session, program.id, "VIP", actor_id=admin.id, now=utcnow())
            save_plan(db.session, program.id, PlanTerms(percent_bps=1_000, recurring_months=None), group_id=vip.id,
                      effective_from=from_now, actor_id=admin.id, now=from_now)  # fmt: skip
        elif other_plan == "alice_own_for_a_year":
            save_plan(db.session, program.id, PlanTerms(percent_bps=1_000, recurring_months=12), affiliate_id=alice.id,
                      effective_from=from_now, actor_id=admin.id, now=from_now)  # fmt: skip
        db.session.commit()
    report(app, program, alice.id, "first", 10_000, customer_external_id="c1")
    with app.app_context():
        binding = find_binding(db.session, db.session.get(type(program), program.id), "c1", None)
        assert binding.affiliate_id == alice.id
        assert binding.until - binding.bound_at >= timedelta(days=bound_for_days)
        assert binding.until - binding.bound_at <= timedelta(days=bound_for_days + 1)


def test_each_commission_says_how_it_was_worked_out_in_money_of_its_currency(app):
    """The rule an affiliate reads (earnings page, statement, mails) writes amounts as money, never minor units."""
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000, flat_cents=250, tier_basis="revenue", tier_scope="marginal")
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO commission_tiers (plan_id, threshold, percent_bps, flat_cents) "
                "SELECT id, 15000, 2000, 250 FROM commission_plans WHERE program_id = :p"
            ),
            {"p": program.id},
        )
        db.session.commit()
    alice = make_affiliate(app)
    first = report(app, program, alice.id, "rw-1", 10_000)
    second = report(app, program, alice.id, "rw-2", 10_000)
    run_jobs(app)
    with app.app_context():
        rules = dict(db.session.execute(select(Commission.conversion_id, Commission.rule)).all())
    assert rules[first].startswith("base rate: 10.00% of $100.00; $2.50 flat"), rules[first]
    assert rules[second].startswith(
        "base rate: 10.00% of $50.00; tier from $150.00 of revenue: 20.00% of $50.00; $2.50 flat"
    ), rules[second]


def test_a_sale_reported_minutes_ahead_is_paid_by_the_version_in_force_when_it_happens(app):
    """The API takes an occurred_at up to five minutes ahead (clocks apart); a version saved "from now" before then
    is the one in force at the sale, so the money job waits for the sale to have happened."""
    admin = make_admin(app)
    program = make_program(app, admin)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    now = utcnow()
    ahead = report(app, program, alice.id, "ahead-1", 10_000, occurred_at=now + timedelta(minutes=4))
    run_jobs(app, now=now)
    assert own(app, ahead) == 0, "not evaluated before it happens"
    with app.app_context():
        changed = now + timedelta(minutes=1)
        save_plan(db.session, program.id, PlanTerms(percent_bps=2_000), effective_from=changed, actor_id=admin.id,
                  now=changed)  # fmt: skip
        db.session.commit()
    run_jobs(app, now=now + timedelta(minutes=5))
    assert own(app, ahead) == 2_000


def test_a_minimum_payout_of_zero_pays_those_owed_something_and_nobody_nothing(app):
    from affiliate.services.payouts import build_batch
    from tests.factories import make_finance
    from tests.money.test_payouts import _details, _earn

    program = make_program(app, make_admin(app), minimum_payout_cents=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    finance = make_finance(app)
    for person in (alice, bob):
        _details(app, person)
    _earn(app, program, alice, 1_000, "a-1")
    with app.app_context():
        build_batch(db.session, "USD", actor=db.session.get(User, finance.id), now=utcnow())
        db.session.commit()  # Alice's balance is now reserved: zero
    _earn(app, program, bob, 1_000, "b-1")
    with app.app_context():
        second, _ = build_batch(db.session, "USD", actor=db.session.get(User, finance.id), now=utcnow())
        db.session.commit()
        payees = db.session.scalars(select(Payout.affiliate_id).where(Payout.batch_id == second.id)).all()
    assert payees == [bob.id]
