"""Admins set what a program pays in the portal: versions, tiers, a preview from the paying code, form errors."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import AuditLog, Commission, CommissionPlan, Conversion, utcnow
from affiliate.services import accrual
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report

BLANK_TIERS = {f"tiers-{n}-{part}": "" for n in range(5) for part in ("threshold", "percent", "flat")}
PLAN = {
    "percent": "10",
    "flat": "0",
    "tier_basis": "count",
    "tier_scope": "whole_period",
    **BLANK_TIERS,
    "tiers-0-threshold": "3",
    "tiers-0-percent": "20",
    "tiers-0-flat": "0",
    "second_tier": "0",
    "recurring": "first",
    "recurring_months": "",
    "referrer_reward": "0",
    "referee_reward": "0",
    "effective_from": "",
    "preview_amount": "120.00",
    "preview_count": "12",
    "preview_revenue": "1000.00",
}


@pytest.fixture
def program(app, auth):
    admin = make_admin(app)
    auth.login(admin.email)
    return make_program(app, admin, hold_days=0)


def versions(app, program) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(CommissionPlan).where(CommissionPlan.program_id == program.id)
        )


def test_a_new_version_pays_the_next_sales_and_is_listed_and_audited(app, auth, program):
    alice = make_affiliate(app)
    earlier = report(app, program, alice.id, "before-the-plan", 10_000)
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
    url = f"/admin/programs/{program.id}/plan/"
    saved = auth.post(url, {**PLAN, "save": "Save as a new version"})
    assert saved.status_code == 302
    page = auth.client.get(url).get_data(as_text=True)
    assert "10% of each sale; from 3 sales in a month: 20% (whole month)" in page
    assert "in force" in page
    for n in range(3):
        report(app, program, alice.id, f"after-{n}", 10_000)
    with app.app_context():
        accrual.run(db.session, now=utcnow() + timedelta(seconds=1))
        db.session.commit()
        paid = db.session.execute(
            select(Commission.conversion_id, func.sum(Commission.amount_cents)).group_by(Commission.conversion_id)
        ).all()
        assert sorted(amount for _, amount in paid) == [2_000] * 4, "the tier raises the whole month to 20%"
        kinds = db.session.execute(
            select(Commission.kind, Commission.amount_cents).where(Commission.conversion_id == earlier)
        ).all()
        assert kinds == [("raise", 2_000)], "the older version paid it nothing; the month's tier raised it"
        (entry,) = db.session.scalars(select(AuditLog).where(AuditLog.action == "plan.version_added")).all()
        assert entry.actor_id is not None


def test_the_preview_comes_from_the_paying_rules(app, auth, program):
    page = auth.post(f"/admin/programs/{program.id}/plan/", {**PLAN, "preview": "Preview"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "A $120.00 sale by an affiliate with 12 sales ($1,000.00) this month earns $24.00" in text
    assert versions(app, program) == 1, "a preview saves nothing"


def test_a_later_start_is_scheduled_not_in_force(app, auth, program):
    later = (utcnow() + timedelta(days=10)).strftime("%Y-%m-%d %H:%M")
    assert (
        auth.post(f"/admin/programs/{program.id}/plan/", {**PLAN, "effective_from": later, "save": "Save"}).status_code
        == 302
    )
    page = auth.client.get(f"/admin/programs/{program.id}/plan/").get_data(as_text=True)
    assert "scheduled" in page and "no plan" not in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"percent": "101"}, "between 0 and 100"),
        ({"percent": "ten"}, "such as 10"),
        ({"percent": "10.555"}, "at most two decimals"),
        ({"flat": "-1"}, ""),
        ({"tiers-1-threshold": "3", "tiers-1-percent": "30"}, "same threshold"),
        ({"tiers-0-threshold": "0"}, "1 or more"),
        ({"tiers-0-threshold": "2.5"}, "whole number"),
        ({"recurring": "months", "recurring_months": ""}, "how many months"),
        ({"recurring": "months", "recurring_months": "99999"}, "Between 1 and 1,200"),
        ({"effective_from": "next tuesday"}, "Write a moment"),
        ({"effective_from": "2001-01-01"}, "never to the past"),
        ({"effective_from": "0001-01-01T00:00+14:00"}, "outside the years 1 to 9999"),
        ({"effective_from": "9999-12-31T23:59-14:00"}, "outside the years 1 to 9999"),
        ({"effective_from": "0001-01-01 00:00:00+00:01"}, "outside the years 1 to 9999"),
        ({"second_tier": "1e400"}, "between 0 and 100"),
        ({"recurring": "months", "recurring_months": "\u00b2"}, "Between 1 and 1,200"),
        ({"recurring": "months", "recurring_months": "9" * 5000}, "Between 1 and 1,200"),
        ({"tiers-0-threshold": "\u00b2"}, "whole number"),
    ],
)
def test_bad_values_are_form_errors_that_save_nothing(app, auth, program, change, message):
    response = auth.post(f"/admin/programs/{program.id}/plan/", {**PLAN, **change, "save": "Save"})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert versions(app, program) == 1


def test_revenue_tiers_take_amounts_in_the_programs_currency(app, auth, program):
    plan = {
        **PLAN,
        "tier_basis": "revenue",
        "tier_scope": "marginal",
        "tiers-0-threshold": "1000.00",
        "tiers-0-percent": "15",
        "save": "Save",
    }
    assert auth.post(f"/admin/programs/{program.id}/plan/", plan).status_code == 302
    with app.app_context():
        latest = db.session.scalars(select(CommissionPlan).order_by(CommissionPlan.id.desc())).first()
        assert [(t.threshold, t.percent_bps) for t in latest.tiers] == [(100_000, 1_500)]
    page = auth.client.get(f"/admin/programs/{program.id}/plan/").get_data(as_text=True)
    assert "from $1,000.00 in a month: 15% (beyond each threshold)" in page


def test_affiliates_see_what_the_plan_pays_them_and_their_progress_this_month(app, auth, program):
    from tests.factories import Auth

    assert auth.post(f"/admin/programs/{program.id}/plan/", {**PLAN, "save": "Save"}).status_code == 302
    alice = make_affiliate(app)
    for n in range(2):
        report(app, program, alice.id, f"progress-{n}", 10_000, occurred_at=utcnow())
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
    partner = app.test_client()
    Auth(partner).login(alice.email)
    home = partner.get("/partner/").get_data(as_text=True)
    assert "10% of each sale; from 3 sales in a month: 20% (whole month)" in home
    assert "This month: 2 sales; 1 more sale to reach 20%" in home


@pytest.mark.parametrize(("recurring", "months", "repeat_earns"), [("life", "", True), ("first", "", False)])
def test_the_recurring_choice_is_kept_as_chosen(app, auth, program, recurring, months, repeat_earns):
    """A plan paying repeat sales for life pays a customer's later sales; first-sale-only does not."""
    alice = make_affiliate(app)
    url = f"/admin/programs/{program.id}/plan/"
    saved = auth.post(
        url,
        {
            **PLAN,
            "tiers-0-threshold": "",
            "tiers-0-percent": "",
            "tiers-0-flat": "",
            "recurring": recurring,
            "recurring_months": months,
            "save": "Save",
        },
    )
    assert saved.status_code == 302
    for order in ("first", "repeat"):
        report(app, program, alice.id, order, 10_000, customer_external_id="cust-1")
    with app.app_context():
        accrual.run(db.session, now=utcnow() + timedelta(seconds=1))
        db.session.commit()
        earned = dict(
            db.session.execute(
                select(Conversion.order_id, func.sum(Commission.amount_cents))
                .join(Commission, Commission.conversion_id == Conversion.id)
                .group_by(Conversion.order_id)
            ).all()
        )
    assert earned == ({"first": 1_000, "repeat": 1_000} if repeat_earns else {"first": 1_000})
    form = auth.client.get(url).get_data(as_text=True)
    assert re.search(rf'<option selected value="{recurring}"|<option value="{recurring}" selected', form)


def test_a_version_with_more_tiers_than_the_empty_rows_keeps_every_tier_when_edited(app, auth, program):
    """A version saved through the API may have up to 20 tiers: the editor shows each, so a change of the base rate
    does not quietly drop the tiers past its first empty rows."""
    from affiliate.services.commissions import PlanTerms, TierRate
    from affiliate.services.plans import save_plan

    tiers = tuple(TierRate(threshold, 1_000 + 100 * threshold, 0) for threshold in range(2, 9))
    with app.app_context():
        now = utcnow()
        save_plan(db.session, program.id, PlanTerms(percent_bps=1_000, tiers=tiers), effective_from=now,
                  actor_id=None, now=now)  # fmt: skip
        db.session.commit()
    url = f"/admin/programs/{program.id}/plan/"
    page = auth.client.get(url).get_data(as_text=True)
    shown = dict(re.findall(r'name="(tiers-\d+-(?:threshold|percent|flat))"[^>]*value="([^"]*)"', page))
    assert sum(1 for name, value in shown.items() if name.endswith("threshold") and value) == 7
    form = {key: value for key, value in PLAN.items() if not key.startswith("tiers-")} | shown
    assert auth.post(url, {**form, "percent": "11", "save": "Save as a new version"}).status_code == 302
    with app.app_context():
        latest = db.session.scalars(select(CommissionPlan).order_by(CommissionPlan.id.desc())).first()
        assert latest.percent_bps == 1_100 and len(latest.tiers) == 7
