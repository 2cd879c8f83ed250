"""A plan's performance bonus: paid once a month on the sale that crosses its threshold, and refunded with it.

Every figure is worked out by hand from docs/money.md ("Performance bonus").
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from affiliate.extensions import db
from affiliate.models import Commission, CommissionPlan, CommissionStatus, Conversion, ConversionType, User, utcnow
from affiliate.services import accrual, ledger, money_checks, standing
from affiliate.services.commissions import PlanTerms, period_of
from affiliate.services.plans import PlanError, in_words, save_plan
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report, set_plan
from tests.money.test_money_rules import refund, run_jobs

BONUS = "performance_bonus"


def bonuses(app, affiliate_id: int) -> list[tuple[int, int, str]]:
    """(conversion, amount, status) of the affiliate's performance bonuses, in order."""
    with app.app_context():
        return [
            tuple(row)
            for row in db.session.execute(
                select(Commission.conversion_id, Commission.amount_cents, Commission.status)
                .where(Commission.affiliate_id == affiliate_id, Commission.kind == BONUS)
                .order_by(Commission.id)
            )
        ]


def books_hold(app) -> bool:
    with app.app_context():
        return ledger.check(db.session) == [] and money_checks.check(db.session) == []


@pytest.fixture
def program(app):
    # A year's window, so sales can be dated in last month whatever day the suite runs.
    return make_program(app, make_admin(app), hold_days=0, attribution_window_days=365)


def test_the_sale_that_reaches_the_count_earns_the_bonus_once(app, runner, program):
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=3, bonus_cents=5_000)
    alice = make_affiliate(app)
    sales = [report(app, program, alice.id, f"c-{n}", 10_000) for n in range(5)]
    run_jobs(app)
    # 10% of 100.00 each; the third sale takes the month from 2 to 3 sales and adds 50.00; the 4th and 5th do not.
    assert bonuses(app, alice.id) == [(sales[2], 5_000, "pending")]
    with app.app_context():
        assert ledger.balance(db.session, f"affiliate_pending:{alice.id}", "USD") == -(5 * 1_000 + 5_000)
        bonus = db.session.scalar(select(Commission).where(Commission.kind == BONUS))
        assert bonus.rule.startswith("performance bonus: 3 sales reached in the month")
        assert bonus.period_start == period_of(utcnow())[0]
    assert books_hold(app)
    assert runner.invoke(args=["ledger-check"]).exit_code == 0


def test_revenue_basis_pays_the_sale_that_reaches_the_amount_exactly(app, program):
    set_plan(app, program.id, percent_bps=1_000, tier_basis="revenue", bonus_threshold=25_000, bonus_cents=2_500)
    alice = make_affiliate(app)
    first = report(app, program, alice.id, "r-1", 15_000)
    second = report(app, program, alice.id, "r-2", 10_000)  # 150.00 + 100.00 = 250.00: the threshold itself
    report(app, program, alice.id, "r-3", 10_000)
    run_jobs(app)
    assert bonuses(app, alice.id) == [(second, 2_500, "pending")]
    assert first != second
    assert books_hold(app)


def test_a_month_that_dips_below_the_threshold_and_crosses_again_pays_no_second_bonus(app, program):
    set_plan(app, program.id, percent_bps=1_000, tier_basis="revenue", bonus_threshold=20_000, bonus_cents=1_500)
    alice = make_affiliate(app)
    report(app, program, alice.id, "d-1", 10_000)
    crossing = report(app, program, alice.id, "d-2", 10_000)
    run_jobs(app)
    refund(app, program, "d-1", refund_id="part", amount=5_000)  # the month's revenue: 200.00 -> 150.00
    report(app, program, alice.id, "d-3", 10_000)  # 150.00 -> 250.00 crosses 200.00 again
    run_jobs(app)
    assert bonuses(app, alice.id) == [(crossing, 1_500, "pending")]
    assert books_hold(app)


def test_each_month_has_its_own_bonus_by_occurred_at(app, program):
    set_plan(app, program.id, flat_cents=100, bonus_threshold=2, bonus_cents=1_000)
    alice = make_affiliate(app)
    last_month = period_of(utcnow())[0] - timedelta(days=1)
    # Reported late, each counts in the month it occurred in (docs/money.md, "The period and its volume").
    late = [report(app, program, alice.id, f"late-{n}", 5_000, occurred_at=last_month) for n in range(2)]
    now = [report(app, program, alice.id, f"now-{n}", 5_000) for n in range(2)]
    run_jobs(app)
    assert bonuses(app, alice.id) == [(late[1], 1_000, "pending"), (now[1], 1_000, "pending")]
    assert books_hold(app)


def test_signups_neither_count_towards_the_bonus_nor_earn_it(app, program):
    set_plan(app, program.id, flat_cents=100, bonus_threshold=2, bonus_cents=1_000)
    alice = make_affiliate(app)
    for n in range(3):
        report(app, program, alice.id, f"s-{n}", 0, type=ConversionType.SIGNUP)
    sale = report(app, program, alice.id, "only-sale", 5_000)
    run_jobs(app)
    assert bonuses(app, alice.id) == []
    second = report(app, program, alice.id, "second-sale", 5_000)
    run_jobs(app)
    assert bonuses(app, alice.id) == [(second, 1_000, "pending")]
    assert sale != second


def test_a_refund_of_the_crossing_sale_reverses_its_bonus_in_proportion(app, program):
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=2, bonus_cents=3_333)
    alice = make_affiliate(app)
    report(app, program, alice.id, "p-1", 10_000)
    crossing = report(app, program, alice.id, "p-2", 10_000)
    run_jobs(app)
    with app.app_context():
        accrual.approve_due(db.session, now=utcnow())
        db.session.commit()
    refund(app, program, "p-2", refund_id="half", amount=5_000)
    run_jobs(app)
    # floor(3,333 x 5,000 / 10,000) = 1,666 of the bonus and 500 of the 10% earning come back.
    with app.app_context():
        assert accrual.reversed_cents(db.session, _bonus_id(crossing)) == 1_666
        payable = -ledger.balance(db.session, f"affiliate_payable:{alice.id}", "USD")
        assert payable == 1_000 + 1_000 + 3_333 - 500 - 1_666
    assert bonuses(app, alice.id) == [(crossing, 3_333, "approved")], "still live: the month keeps its one bonus"
    assert books_hold(app)


def test_a_fully_refunded_crossing_sale_frees_the_month_for_the_sale_that_crosses_again(app, program):
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=2, bonus_cents=2_000)
    alice = make_affiliate(app)
    report(app, program, alice.id, "f-1", 10_000)
    crossing = report(app, program, alice.id, "f-2", 10_000)
    run_jobs(app)
    refund(app, program, "f-2")
    run_jobs(app)
    # The refunded sale no longer counts: the month has 1 sale again, and the next one takes it to 2.
    again = report(app, program, alice.id, "f-3", 10_000)
    run_jobs(app)
    assert bonuses(app, alice.id) == [(crossing, 2_000, "reversed"), (again, 2_000, "pending")]
    with app.app_context():
        pending = -ledger.balance(db.session, f"affiliate_pending:{alice.id}", "USD")
        assert pending == 1_000 + 1_000 + 2_000 - 1_000 - 2_000 + 1_000 + 2_000
    assert books_hold(app)


def test_a_sale_refunded_in_full_before_the_money_job_runs_leaves_the_bonus_to_the_next_crossing_sale(app, program):
    """An order cancelled at once: the sale and its full refund both arrive before the money job's next run, which
    evaluates sales before it works refunds out. The refunded sale no longer counts, so the next sale is the one
    that reaches the threshold, and it earns the bonus, in the same run."""
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=1, bonus_cents=500)
    alice = make_affiliate(app)
    cancelled = report(app, program, alice.id, "x-1", 1_000)
    refund(app, program, "x-1")
    kept = report(app, program, alice.id, "x-2", 2_000)
    assert run_jobs(app).reversed_cents == 100 + 500, "the tally counts the refund worked out early"
    assert bonuses(app, alice.id) == [(cancelled, 500, "reversed"), (kept, 500, "pending")]
    with app.app_context():
        assert -ledger.balance(db.session, f"affiliate_pending:{alice.id}", "USD") == 200 + 500
    assert books_hold(app)


def test_rejecting_the_crossing_sale_takes_its_bonus_back(app, program):
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=1, bonus_cents=700)
    alice = make_affiliate(app)
    sale = report(app, program, alice.id, "fraud", 10_000)
    run_jobs(app)
    with app.app_context():
        accrual.approve_due(db.session, now=utcnow())
        # Fraud found after approval: rejected from the conversion's page, which takes back what it earned.
        db.session.execute(update(Conversion).where(Conversion.id == sale).values(status="rejected"))
        assert accrual.take_back(db.session, sale, now=utcnow(), actor_id=None, note="fraud") == 2
        db.session.commit()
        assert ledger.balance(db.session, f"affiliate_payable:{alice.id}", "USD") == 0
    assert bonuses(app, alice.id) == [(sale, 700, "reversed")]
    assert books_hold(app)


def test_the_recruiter_takes_no_second_tier_of_the_bonus(app, program):
    set_plan(app, program.id, percent_bps=1_000, second_tier_bps=1_000, bonus_threshold=1, bonus_cents=5_000)
    recruiter, recruit = make_affiliate(app), make_affiliate(app)
    with app.app_context():
        db.session.get(User, recruit.id).referred_by_id = recruiter.id
        db.session.commit()
    report(app, program, recruit.id, "recruited", 10_000)
    run_jobs(app)
    with app.app_context():
        rows = db.session.execute(
            select(Commission.affiliate_id, Commission.kind, Commission.amount_cents).order_by(Commission.id)
        ).all()
    assert sorted(tuple(r) for r in rows) == sorted(
        [(recruit.id, "earning", 1_000), (recruit.id, BONUS, 5_000), (recruiter.id, "second_tier", 100)]
    )


def test_a_month_already_past_the_threshold_pays_no_bonus_when_a_version_adds_one(app, program):
    admin = make_admin(app)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(3):
        report(app, program, alice.id, f"before-{n}", 10_000)
    run_jobs(app)
    with app.app_context():
        now = utcnow()
        save_plan(
            db.session,
            program.id,
            PlanTerms(percent_bps=1_000, bonus_threshold=3, bonus_cents=5_000),
            effective_from=now,
            actor_id=admin.id,
            now=now,
        )
        db.session.commit()
    report(app, program, alice.id, "after", 10_000)
    run_jobs(app, now=utcnow() + timedelta(seconds=1))
    assert bonuses(app, alice.id) == [], "the month went from 3 to 4 sales: it did not cross 3 under this version"


def test_the_database_refuses_a_second_live_bonus_in_a_month(app, program):
    set_plan(app, program.id, percent_bps=1_000, bonus_threshold=1, bonus_cents=500)
    alice = make_affiliate(app)
    sale = report(app, program, alice.id, "one", 10_000)
    other = report(app, program, alice.id, "two", 10_000)
    run_jobs(app)
    with app.app_context():
        bonus = db.session.get(Commission, _bonus_id(sale))
        copy = Commission(
            affiliate_id=bonus.affiliate_id,
            program_id=bonus.program_id,
            conversion_id=other,
            kind=BONUS,
            rule="copy",
            amount_cents=500,
            currency="USD",
            status=CommissionStatus.PENDING,
            available_at=bonus.available_at,
            period_start=bonus.period_start,
        )
        db.session.add(copy)
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_plans_refuse_half_a_bonus_and_describe_a_whole_one(app, program):
    with app.app_context():
        for terms in (
            PlanTerms(bonus_cents=5_000),
            PlanTerms(bonus_threshold=20),
            PlanTerms(bonus_threshold=0, bonus_cents=1),
            PlanTerms(bonus_threshold=2, bonus_cents=-1),
        ):
            with pytest.raises(PlanError):
                save_plan(db.session, program.id, terms, effective_from=utcnow(), actor_id=None, now=utcnow())
    assert in_words(PlanTerms(percent_bps=1_000, bonus_threshold=20, bonus_cents=5_000), "USD") == (
        "10% of each sale; plus a $50.00 bonus at 20 sales this month (once a month)."
    )
    revenue = PlanTerms(tier_basis="revenue", bonus_threshold=500_000, bonus_cents=10_000)
    assert "plus a ¥10,000 bonus at ¥500,000 of sales this month" in in_words(revenue, "JPY")


def _bonus_id(conversion_id: int) -> int:
    return db.session.scalar(
        select(Commission.id).where(Commission.conversion_id == conversion_id, Commission.kind == BONUS)
    )


EDITOR = {
    "percent": "10",
    "flat": "0",
    "tier_basis": "count",
    "tier_scope": "whole_period",
    **{f"tiers-{n}-{part}": "" for n in range(5) for part in ("threshold", "percent", "flat")},
    "second_tier": "0",
    "recurring": "first",
    "recurring_months": "",
    "referrer_reward": "0",
    "referee_reward": "0",
    "bonus": "50.00",
    "bonus_threshold": "20",
    "effective_from": "",
    "preview_amount": "120.00",
    "preview_count": "19",
    "preview_revenue": "1000.00",
}


def test_the_plan_editor_saves_a_bonus_and_the_affiliate_reads_it(app, auth, program):
    from tests.factories import Auth

    admin = make_admin(app)
    auth.login(admin.email)
    url = f"/admin/programs/{program.id}/plan/"
    preview = auth.post(url, {**EDITOR, "preview": "Preview"}).get_data(as_text=True)
    assert "It reaches the month&#39;s bonus threshold: $50.00 more." in preview, "the 20th sale crosses 20"
    assert auth.post(url, {**EDITOR, "save": "Save"}).status_code == 302
    with app.app_context():
        plan = standing.plan_in_force(db.session, program.id, None, utcnow())
        assert (plan.bonus_threshold, plan.bonus_cents) == (20, 5_000)
    editor = auth.client.get(url).get_data(as_text=True)
    assert "plus a $50.00 bonus at 20 sales this month" in editor
    assert 'value="50.00"' in editor and 'value="20"' in editor, "the next version starts from this one's bonus"
    alice = make_affiliate(app)
    partner = app.test_client()
    Auth(partner).login(alice.email)
    assert "10% of each sale; plus a $50.00 bonus at 20 sales this month" in partner.get("/partner/").get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bonus_threshold": ""}, "Say at what volume"),
        ({"bonus": "0"}, "Give the bonus an amount"),
        ({"bonus_threshold": "2.5"}, "whole number of sales"),
        ({"bonus_threshold": "0"}, "at least 1"),
        ({"bonus_threshold": "\u00b2"}, "whole number of sales"),
        ({"bonus": "-5"}, "such as 50.00"),
        ({"bonus": "50.001"}, "at most 2 decimal places"),
        ({"tier_basis": "revenue", "bonus_threshold": "100.005"}, "at most 2 decimal places"),
    ],
)
def test_a_half_or_bad_bonus_is_a_form_error_that_saves_nothing(app, auth, program, change, message):
    auth.login(make_admin(app).email)
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(CommissionPlan))
    response = auth.post(f"/admin/programs/{program.id}/plan/", {**EDITOR, **change, "save": "Save"})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CommissionPlan)) == before
