"""Commission arithmetic (C11): integer cents, exact splits, monotone tiers, exact boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affiliate.services.commissions import (
    MARGINAL,
    REVENUE,
    Earning,
    PlanTerms,
    TierRate,
    compute,
    percent_of,
    rate_at,
    split,
)

TIERED = PlanTerms(percent_bps=1000, tiers=(TierRate(10, 1500, 0), TierRate(50, 2000, 0)))


def total(lines, beneficiary="affiliate") -> int:
    return sum(line.amount_cents for line in lines if line.beneficiary == beneficiary)


def sale(amount: int, **fields) -> Earning:
    return Earning(kind="sale", amount_cents=amount, **fields)


def test_percent_rounds_half_up():
    assert percent_of(100, 50) == 1  # 0.5 cent rounds up
    assert percent_of(100, 49) == 0
    assert percent_of(9_999, 1_000) == 1_000  # 999.9
    assert percent_of(0, 10_000) == 0
    with pytest.raises(ValueError):
        percent_of(-1, 100)


@pytest.mark.parametrize(("earlier", "bps"), [(8, 1000), (9, 1500), (48, 1500), (49, 2000)])
def test_count_tier_boundaries_are_exact(earlier, bps):
    lines = compute(sale(10_000), TIERED, [10_000] * earlier)
    assert lines[0].amount_cents == percent_of(10_000, bps)


def test_crossing_a_tier_pays_the_period_difference_as_an_adjustment():
    lines = compute(sale(10_000), TIERED, [10_000] * 9)
    assert [line.amount_cents for line in lines] == [1_500, 9 * 500]
    assert "earlier conversions" in lines[1].rule


def test_marginal_revenue_tiers_split_a_sale_at_the_threshold():
    plan = PlanTerms(percent_bps=1000, tier_basis=REVENUE, tier_scope=MARGINAL, tiers=(TierRate(100_000, 2000, 0),))
    (line,) = compute(sale(30_000), plan, [80_000])
    assert line.amount_cents == 4_000  # 20,000 at 10% and 10,000 at 20%
    assert "10.00% of 20000 cents" in line.rule and "20.00% of 10000 cents" in line.rule


def test_splitting_a_sale_at_a_threshold_never_adds_a_rounding_cent():
    plan = PlanTerms(percent_bps=5, tier_basis=REVENUE, tier_scope=MARGINAL, tiers=(TierRate(10_000, 5, 0),))
    assert compute(sale(10_000), plan, [9_000])[0].amount_cents == compute(sale(10_000), plan, [])[0].amount_cents


def test_recurring_periods():
    plan = PlanTerms(percent_bps=1000, recurring_months=3)
    assert total(compute(sale(1_000, first_sale=False, months_since_first=2), plan, [])) == 100
    assert compute(sale(1_000, first_sale=False, months_since_first=3), plan, []) == []
    first_only = PlanTerms(percent_bps=1000, recurring_months=0)
    assert total(compute(sale(1_000), first_only, [])) == 100
    assert compute(sale(1_000, first_sale=False), first_only, []) == []
    lifetime = PlanTerms(percent_bps=1000, recurring_months=None)
    assert total(compute(sale(1_000, first_sale=False, months_since_first=120), lifetime, [])) == 100


def test_second_tier_and_refer_a_friend():
    plan = PlanTerms(flat_cents=500, percent_bps=1000, second_tier_bps=1000, referrer_reward_cents=300,
                     referee_reward_cents=200)  # fmt: skip
    lines = compute(sale(10_000), plan, [], recruited=True)
    assert total(lines) == 1_500 and total(lines, "recruiter") == 150
    assert compute(sale(10_000), plan, [], recruited=False)[-1].beneficiary == "affiliate"
    signup = compute(Earning(kind="signup", amount_cents=0, member_referral=True), plan, [])
    assert (total(signup, "referrer"), total(signup, "referee"), total(signup)) == (300, 200, 500)


@settings(max_examples=500, deadline=None)
@given(total_cents=st.integers(0, 10**12), weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
def test_splits_sum_exactly(total_cents, weights):
    if not sum(weights):
        return
    parts = split(total_cents, weights)
    assert sum(parts) == total_cents
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part * sum(weights) - total_cents * weight) < sum(weights)  # within one cent of proportional


tiers = st.lists(st.tuples(st.integers(1, 200), st.integers(0, 3000)), min_size=0, max_size=4, unique_by=lambda t: t[0])


def _monotone_plan(base, pairs, basis, scope):
    # Rates rise with thresholds: what "volume tiers" promise an affiliate.
    ordered = sorted(pairs)
    rates, rate = [], base
    for _, bump in ordered:
        rate = min(10_000, rate + bump)
        rates.append(rate)
    scale = 1 if basis == "count" else 10_000
    levels = tuple(TierRate(t * scale, r, 0) for (t, _), r in zip(ordered, rates, strict=True))
    return PlanTerms(percent_bps=base, tier_basis=basis, tier_scope=scope, tiers=levels)


@settings(max_examples=400, deadline=None)
@given(
    base=st.integers(0, 5000), pairs=tiers, basis=st.sampled_from(["count", "revenue"]),
    scope=st.sampled_from(["whole_period", "marginal"]), amount=st.integers(0, 10**7),
    earlier=st.lists(st.integers(0, 10**6), max_size=30), more=st.integers(1, 30),
)  # fmt: skip
def test_tiers_are_monotone_and_amounts_integer(base, pairs, basis, scope, amount, earlier, more):
    plan = _monotone_plan(base, pairs, basis, scope)
    lines = compute(sale(amount), plan, earlier)
    assert all(isinstance(line.amount_cents, int) and line.amount_cents >= 0 for line in lines)
    own = [line for line in lines if "earlier conversions" not in line.rule]
    busier = compute(sale(amount), plan, earlier + [10**6] * more)
    richer = [line for line in busier if "earlier conversions" not in line.rule]
    assert total(richer) >= total(own), "more volume never lowers this conversion's commission"


@settings(max_examples=300, deadline=None)
@given(amounts=st.lists(st.integers(0, 10**6), min_size=1, max_size=60), pairs=tiers, base=st.integers(0, 5000))
def test_whole_period_adjustments_pay_every_conversion_at_the_final_rate(amounts, pairs, base):
    plan = _monotone_plan(base, pairs, "count", "whole_period")
    paid = sum(total(compute(sale(a), plan, amounts[:i])) for i, a in enumerate(amounts))
    bps, flat, _ = rate_at(plan, len(amounts))
    assert paid == sum(percent_of(a, bps) + flat for a in amounts)
