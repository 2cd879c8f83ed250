"""The plan service against a small reference model: random plans, tiers, versions, groups and overrides.

The model is written from the README and docs/money.md, not from the services: which version pays an
affiliate at a moment (their own version in force, else their group's, else the program's; within one
owner the latest ``effective_from`` in force, and of two saved for the same moment the later saved),
which plans are refused (and then nothing changes), and what a month's first sale earns under the plan
in force, worked out by the independent money model in tests/money/reference.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import CommissionPlan, Program, utcnow
from affiliate.services import groups, ledger, plans, standing
from affiliate.services.commissions import COUNT, MARGINAL, REVENUE, WHOLE_PERIOD, PaidConversion, PlanTerms, TierRate
from affiliate.services.commissions import evaluate as evaluate_commissions
from tests.factories import make_admin, make_affiliate, make_program
from tests.money import reference

AFFILIATES = 3
START = utcnow().replace(microsecond=0) + timedelta(days=1)


@dataclass
class Version:
    owner: tuple  # ("program",) | ("group", name) | ("affiliate", index)
    effective_from: object
    saved: int
    terms: PlanTerms


@dataclass
class PlanModel:
    versions: list[Version] = field(default_factory=list)
    group_of: dict[int, str] = field(default_factory=dict)  # affiliate index -> group name; absent: default group

    def in_force(self, affiliate: int, at) -> PlanTerms:
        owners = [("affiliate", affiliate)]
        if affiliate in self.group_of:
            owners.append(("group", self.group_of[affiliate]))
        owners.append(("program",))
        for owner in owners:
            candidates = [v for v in self.versions if v.owner == owner and v.effective_from <= at]
            if candidates:
                return max(candidates, key=lambda v: (v.effective_from, v.saved)).terms
        return PlanTerms()


def acceptable(terms: PlanTerms) -> bool:
    """What the README allows a plan to be."""
    thresholds = [tier.threshold for tier in terms.tiers]
    rates = [terms.percent_bps, terms.second_tier_bps, *(tier.percent_bps for tier in terms.tiers)]
    amounts = [
        terms.flat_cents,
        terms.referrer_reward_cents,
        terms.referee_reward_cents,
        *(tier.flat_cents for tier in terms.tiers),
    ]
    return (
        all(0 <= rate <= 10_000 for rate in rates)
        and all(amount >= 0 for amount in amounts)
        and all(threshold >= 1 for threshold in thresholds)
        and len(set(thresholds)) == len(thresholds)
        and (terms.recurring_months is None or 0 <= terms.recurring_months <= 1200)
    )


def first_sale_earns(terms: PlanTerms, amount: int) -> int:
    """The month's first sale, by the money model: count tiers see volume 1; revenue tiers see the amount."""
    plan = reference.Plan(
        flat=terms.flat_cents,
        bps=terms.percent_bps,
        basis=terms.tier_basis,
        scope=terms.tier_scope,
        tiers=tuple(reference.Tier(t.threshold, t.percent_bps, t.flat_cents) for t in terms.tiers),
    )
    if terms.tier_basis == REVENUE and terms.tier_scope == MARGINAL:
        return reference.marginal_revenue(plan, 0, amount)
    volume = 1 if terms.tier_basis == COUNT else amount
    return reference.earn(amount, reference.rate_at(plan, volume))


tiers = st.lists(
    st.builds(
        TierRate,
        threshold=st.integers(-1, 30_000),
        percent_bps=st.integers(0, 10_500),
        flat_cents=st.integers(-10, 5_000),
    ),
    max_size=4,
).map(tuple)
plan_terms = st.builds(
    PlanTerms,
    flat_cents=st.integers(-10, 5_000),
    percent_bps=st.integers(0, 10_500),
    tier_basis=st.sampled_from((COUNT, REVENUE)),
    tier_scope=st.sampled_from((WHOLE_PERIOD, MARGINAL)),
    tiers=tiers,
    second_tier_bps=st.integers(0, 10_500),
    recurring_months=st.none() | st.integers(-1, 1_300),
    referrer_reward_cents=st.integers(0, 1_000),
    referee_reward_cents=st.integers(0, 1_000),
)
GROUP_NAMES = ("VIP", "Bloggers", "Coupon sites")


def machine_for(app, admin, affiliates):
    class PlanService(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.program = make_program(app, admin)
            self.model = PlanModel()
            self.now = START
            self.saved = 0
            self.groups: dict[str, int] = {}
            with app.app_context():
                [opening] = db.session.scalars(
                    select(CommissionPlan).where(CommissionPlan.program_id == self.program.id)
                )
                self.model.versions.append(
                    Version(("program",), opening.effective_from, self.next_saved(), standing.terms_of(opening))
                )

        def next_saved(self) -> int:
            self.saved += 1
            return self.saved

        @rule(hours=st.integers(1, 24 * 40))
        def time_passes(self, hours):
            self.now += timedelta(hours=hours)

        @rule(name=st.sampled_from(GROUP_NAMES))
        def create_group(self, name):
            with app.app_context():
                try:
                    group = groups.create_group(db.session, self.program.id, name, actor_id=admin.id, now=self.now)
                except groups.GroupError:
                    db.session.rollback()
                    assert name in self.groups, f"{name} refused though new"
                    return
                db.session.commit()
                assert name not in self.groups, f"{name} created twice"
                self.groups[name] = group.id

        @rule(who=st.sets(st.integers(0, AFFILIATES - 1), min_size=1), to=st.none() | st.sampled_from(GROUP_NAMES))
        def move(self, who, to):
            if to is not None and to not in self.groups:
                return
            with app.app_context():
                ids = [affiliates[i].id for i in sorted(who)]
                groups.move(db.session, self.program.id, ids, self.groups.get(to), actor_id=admin.id, now=self.now)
                db.session.commit()
            for i in who:
                if to is None:
                    self.model.group_of.pop(i, None)
                else:
                    self.model.group_of[i] = to

        @rule(
            terms=plan_terms,
            owner=st.sampled_from(("program", "group", "affiliate")),
            which=st.integers(0, AFFILIATES - 1),
            group=st.sampled_from(GROUP_NAMES),
            starts=st.integers(-48, 24 * 60),
        )
        def save_version(self, terms, owner, which, group, starts):
            if owner == "group" and group not in self.groups:
                return
            key = {"program": ("program",), "group": ("group", group), "affiliate": ("affiliate", which)}[owner]
            scope = {
                "program": {},
                "group": {"group_id": self.groups.get(group)},
                "affiliate": {"affiliate_id": affiliates[which].id},
            }[owner]
            effective_from = self.now + timedelta(hours=starts)
            with app.app_context():
                before = db.session.scalar(select(func.count()).select_from(CommissionPlan))
                try:
                    plans.save_plan(
                        db.session,
                        self.program.id,
                        terms,
                        effective_from=effective_from,
                        actor_id=admin.id,
                        now=self.now,
                        **scope,
                    )
                except plans.PlanError:
                    db.session.rollback()
                    assert not acceptable(terms) or effective_from < self.now, f"refused {terms}"
                    after = db.session.scalar(select(func.count()).select_from(CommissionPlan))
                    assert after == before, "a refused plan changes nothing"
                    return
                db.session.commit()
            assert acceptable(terms) and effective_from >= self.now, f"accepted {terms} from {effective_from}"
            self.model.versions.append(Version(key, effective_from, self.next_saved(), terms))

        @precondition(lambda self: hasattr(self, "program"))
        @invariant()
        def the_plan_in_force_is_the_models(self):
            # Now, and each version's first moment and the moment before it, where precedence changes hands.
            moments = {self.now, self.now + timedelta(days=70)}
            for version in self.model.versions[-4:]:
                moments |= {version.effective_from, version.effective_from - timedelta(seconds=1)}
            with app.app_context():
                for i, affiliate in enumerate(affiliates):
                    for at in sorted(moments):
                        got = standing.plan_terms(db.session, self.program.id, affiliate.id, at)
                        want = self.model.in_force(i, at)
                        assert _normal(got) == _normal(want), f"affiliate {i} at {at}"
                        for amount in (9_999, 125_000):
                            lines = evaluate_commissions(PaidConversion("sale", amount), got, [])
                            earned = sum(line.amount_cents for line in lines if line.beneficiary == "affiliate")
                            assert earned == first_sale_earns(want, amount), (i, at, amount, want)

    return PlanService


def _normal(terms: PlanTerms) -> PlanTerms:
    """Tiers in threshold order, as a stored plan lists them."""
    return PlanTerms(**{**terms.__dict__, "tiers": tuple(sorted(terms.tiers, key=lambda tier: tier.threshold))})


@pytest.fixture
def people(app):
    return make_admin(app), [make_affiliate(app) for _ in range(AFFILIATES)]


def test_the_plan_in_force_follows_versions_groups_and_overrides(app, people):
    admin, affiliates = people
    run_state_machine_as_test(
        machine_for(app, admin, affiliates),
        settings=settings(
            max_examples=30,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    with app.app_context():
        assert ledger.check(db.session) == []
        assert db.session.scalar(select(func.count()).select_from(Program)) >= 1
