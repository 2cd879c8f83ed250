"""Commission arithmetic: integer cents, exact splits, monotone tiers, exact boundaries, raises by difference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affiliate.services.commissions import (
    MARGINAL,
    REVENUE,
    Counted,
    PaidConversion,
    PlanTerms,
    TierRate,
    add_months,
    earned_at,
    evaluate,
    percent_of,
    period_of,
    rate_at,
    recurring_earns,
    reversal_share,
    split,
)

TIERED = PlanTerms(percent_bps=1000, tiers=(TierRate(10, 1500, 0), TierRate(50, 2000, 0)))


def total(lines, beneficiary="affiliate", kind=None) -> int:
    return sum(
        line.amount_cents for line in lines if line.beneficiary == beneficiary and (kind is None or line.kind == kind)
    )


def sale(amount: int) -> PaidConversion:
    return PaidConversion(kind="sale", amount_cents=amount)


def counted(amounts, plan=None, brought=None) -> list[Counted]:
    """Earlier conversions of the period, each brought to what ``plan``'s base rate gave it."""
    plan = plan or TIERED
    return [
        Counted(i + 1, a, a, brought[i] if brought is not None else earned_at(a, rate_at(plan, 0)))
        for i, a in enumerate(amounts)
    ]


def test_percent_rounds_half_up():
    assert percent_of(100, 50) == 1  # 0.5 cent rounds up
    assert percent_of(100, 49) == 0
    assert percent_of(9_999, 1_000) == 1_000  # 999.9
    assert percent_of(0, 10_000) == 0
    with pytest.raises(ValueError):
        percent_of(-1, 100)


def test_reversal_floors_the_refunded_share():
    assert reversal_share(1_000, 0, 5_000, 10_000) == 500
    assert reversal_share(333, 0, 5_000, 10_000) == 166  # 166.5 floors
    # Two half refunds take back no more than one full refund does.
    first = reversal_share(333, 0, 5_000, 10_000)
    assert first + reversal_share(333, 5_000, 10_000, 10_000) == 333


@pytest.mark.parametrize(("earlier", "bps"), [(8, 1000), (9, 1500), (48, 1500), (49, 2000)])
def test_count_tier_boundaries_are_exact(earlier, bps):
    lines = evaluate(sale(10_000), TIERED, counted([10_000] * earlier))
    assert total(lines, kind="earning") == percent_of(10_000, bps)


def test_crossing_a_tier_raises_each_earlier_conversion_by_its_own_difference():
    lines = evaluate(sale(10_000), TIERED, counted([10_000] * 9))
    raises = [line for line in lines if line.kind == "raise"]
    assert total(lines, kind="earning") == 1_500
    assert [(r.raised_id, r.amount_cents) for r in raises] == [(i, 500) for i in range(1, 10)]


def test_a_raise_pays_only_the_difference_to_what_the_conversion_was_brought_to():
    # Brought to 20% already by an earlier crossing: nothing more; brought to 5% by an older plan: 15% more.
    plan = PlanTerms(percent_bps=500, tiers=(TierRate(3, 2000, 0),))
    period = [Counted(1, 10_000, 10_000, 2_000), Counted(2, 10_000, 10_000, 1_000)]
    lines = evaluate(sale(10_000), plan, period)
    assert [(line.raised_id, line.amount_cents) for line in lines if line.kind == "raise"] == [(2, 1_000)]


def test_a_raise_is_never_negative():
    falling = PlanTerms(percent_bps=2000, tiers=(TierRate(3, 1000, 0),))
    lines = evaluate(sale(10_000), falling, counted([10_000, 10_000], falling))
    assert total(lines) == 1_000 and not [line for line in lines if line.kind == "raise"]


def test_marginal_revenue_tiers_split_a_sale_at_the_threshold():
    plan = PlanTerms(percent_bps=1000, tier_basis=REVENUE, tier_scope=MARGINAL, tiers=(TierRate(100_000, 2000, 0),))
    (line,) = evaluate(sale(30_000), plan, counted([80_000], plan))
    assert line.amount_cents == 4_000  # 20,000 at 10% and 10,000 at 20%
    assert "10.00% of 20000" in line.rule and "20.00% of 10000" in line.rule


def test_count_marginal_threshold_conversion_earns_the_tier():
    plan = PlanTerms(percent_bps=1000, tier_scope=MARGINAL, tiers=(TierRate(3, 2000, 0),))
    assert total(evaluate(sale(10_000), plan, counted([1, 1], plan))) == 2_000
    assert total(evaluate(sale(10_000), plan, counted([1], plan))) == 1_000


def test_splitting_a_sale_at_a_threshold_never_adds_a_rounding_cent():
    plan = PlanTerms(percent_bps=5, tier_basis=REVENUE, tier_scope=MARGINAL, tiers=(TierRate(10_000, 5, 0),))
    split_sale = total(evaluate(sale(10_000), plan, counted([9_000], plan)))
    assert split_sale == total(evaluate(sale(10_000), plan, []))


def test_recurring_windows_count_by_time_not_by_day():
    first = datetime(2026, 1, 31, 18, 0, tzinfo=UTC)
    three = PlanTerms(percent_bps=1000, recurring_months=3)
    assert add_months(first, 1) == datetime(2026, 2, 28, 18, 0, tzinfo=UTC)
    assert recurring_earns(three, datetime(2026, 4, 30, 17, 59, tzinfo=UTC), first)
    assert not recurring_earns(three, datetime(2026, 4, 30, 18, 0, tzinfo=UTC), first)
    assert recurring_earns(PlanTerms(recurring_months=0), first, None)  # a first sale always earns
    assert not recurring_earns(PlanTerms(recurring_months=0), first, first)
    assert recurring_earns(PlanTerms(recurring_months=None), datetime(2036, 1, 1, tzinfo=UTC), first)


def test_the_period_is_the_calendar_month():
    start, end = period_of(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


def test_second_tier_and_refer_a_friend():
    plan = PlanTerms(
        flat_cents=500, percent_bps=1000, second_tier_bps=1000, referrer_reward_cents=300, referee_reward_cents=200
    )
    lines = evaluate(sale(10_000), plan, [], recruited=True)
    assert total(lines) == 1_500 and total(lines, "recruiter") == 150
    assert not [line for line in evaluate(sale(10_000), plan, [], recruited=False) if line.beneficiary == "recruiter"]
    signup = evaluate(PaidConversion(kind="signup", amount_cents=0, member_referral=True), plan, [])
    assert (total(signup, "referrer"), total(signup, "referee"), total(signup)) == (300, 200, 500)


def test_second_tier_is_taken_of_the_rounded_commission():
    plan = PlanTerms(percent_bps=1234, second_tier_bps=5000)
    lines = evaluate(sale(999), plan, [], recruited=True)
    assert total(lines) == 123 and total(lines, "recruiter") == 62  # half of 123, rounded half up


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
    base=st.integers(0, 5000),
    pairs=tiers,
    basis=st.sampled_from(["count", "revenue"]),
    scope=st.sampled_from(["whole_period", "marginal"]),
    amount=st.integers(0, 10**7),
    earlier=st.lists(st.integers(0, 10**6), max_size=30),
    more=st.integers(1, 30),
)
def test_tiers_are_monotone_and_amounts_integer(base, pairs, basis, scope, amount, earlier, more):
    plan = _monotone_plan(base, pairs, basis, scope)
    lines = evaluate(sale(amount), plan, counted(earlier, plan))
    assert all(isinstance(line.amount_cents, int) and line.amount_cents > 0 for line in lines)
    busier = evaluate(sale(amount), plan, counted(earlier + [10**6] * more, plan))
    assert total(busier, kind="earning") >= total(lines, kind="earning"), "more volume never lowers the earning"


@settings(max_examples=300, deadline=None)
@given(amounts=st.lists(st.integers(0, 10**6), min_size=1, max_size=60), pairs=tiers, base=st.integers(0, 5000))
def test_whole_period_pays_every_conversion_at_the_final_rate(amounts, pairs, base):
    # Evaluate the period one conversion at a time, carrying what each was brought to.
    plan = _monotone_plan(base, pairs, "count", "whole_period")
    brought: list[int] = []
    for i, amount in enumerate(amounts):
        lines = evaluate(sale(amount), plan, counted(amounts[:i], plan, brought))
        for line in lines:
            if line.kind == "raise":
                brought[line.raised_id - 1] += line.amount_cents
        brought.append(total(lines, kind="earning"))
    rate = rate_at(plan, len(amounts))
    assert sum(brought) == sum(earned_at(a, rate) for a in amounts)
