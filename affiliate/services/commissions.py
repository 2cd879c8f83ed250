"""Commission arithmetic: a conversion, the plan and the period's history in; commission lines out.

Pure functions in integer cents. The rules, stated once:

- Percentages are basis points (1 bps = 0.01%). ``percent_of`` rounds half up, explicitly:
  (amount x bps + 5,000) // 10,000. Nothing here is ever a float.
- Volume tiers: a tier applies from its threshold on, counted in approved conversions or in
  revenue cents during the period (a calendar month by default). The base rate applies below
  the first threshold. Thresholds are inclusive: reaching exactly the threshold is in the tier.
- Scope ``whole_period``: a conversion earns the rate of the tier the period reaches with it;
  when it crosses a threshold, an adjustment line pays the difference on the period's earlier
  conversions (never an edit of them). Scope ``marginal``: only volume beyond a threshold earns
  its rate; a sale that straddles a revenue threshold is split there, and the parts rounded once.
- Recurring: the first sale of a customer earns; later sales earn while fewer than
  ``recurring_months`` whole months have passed since it (0: the first sale only; None: always).
- Second tier: the affiliate who recruited the earning affiliate gets ``second_tier_bps`` of
  the earning affiliate's commission on this conversion (adjustments included).
- Refer-a-friend: a referred member's signup credits the referrer, and the referred member
  where the plan says so, with fixed rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

WHOLE_PERIOD = "whole_period"
MARGINAL = "marginal"
COUNT = "count"
REVENUE = "revenue"


@dataclass(frozen=True)
class TierRate:
    threshold: int  # conversions, or revenue in cents, from which the tier applies
    percent_bps: int
    flat_cents: int


@dataclass(frozen=True)
class PlanTerms:
    flat_cents: int = 0
    percent_bps: int = 0
    tier_basis: str = COUNT
    tier_scope: str = WHOLE_PERIOD
    tiers: tuple[TierRate, ...] = ()
    second_tier_bps: int = 0
    recurring_months: int | None = 0
    referrer_reward_cents: int = 0
    referee_reward_cents: int = 0


@dataclass(frozen=True)
class Earning:
    """The conversion being paid for."""

    kind: str  # "signup" | "sale"
    amount_cents: int
    first_sale: bool = True  # the customer's first sale in this program
    months_since_first: int = 0  # whole months since that first sale
    member_referral: bool = False  # a signup of a member referred by another member or affiliate


@dataclass(frozen=True)
class Line:
    beneficiary: str  # "affiliate" | "recruiter" | "referrer" | "referee"
    tier_level: int  # 1 for the earning affiliate, 2 for their recruiter
    rule: str  # which rule produced the amount, in words
    amount_cents: int


def percent_of(amount_cents: int, bps: int) -> int:
    """``bps`` basis points of an amount, rounded half up."""
    if amount_cents < 0 or not 0 <= bps <= 10_000:
        raise ValueError("amounts are non-negative cents and rates 0 to 10,000 bps")
    return (amount_cents * bps + 5_000) // 10_000


def split(total_cents: int, weights: Sequence[int]) -> list[int]:
    """Split an amount by weights so the parts sum exactly (largest remainder; ties to the earlier part)."""
    if total_cents < 0 or not weights or any(w < 0 for w in weights) or not sum(weights):
        raise ValueError("a non-negative amount and non-negative weights with a positive sum")
    whole = sum(weights)
    parts = [total_cents * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total_cents * weights[i] % whole), i))
    for i in order[: total_cents - sum(parts)]:
        parts[i] += 1
    return parts


def rate_at(plan: PlanTerms, volume: int) -> tuple[int, int, str]:
    """(percent bps, flat cents, rule) at a period volume: the highest tier reached, else the base rate."""
    reached = [tier for tier in plan.tiers if tier.threshold <= volume]
    if not reached:
        return plan.percent_bps, plan.flat_cents, "base rate"
    tier = max(reached, key=lambda t: t.threshold)
    return tier.percent_bps, tier.flat_cents, f"tier from {tier.threshold} {_unit(plan)}"


def compute(earning: Earning, plan: PlanTerms, period_amounts: Sequence[int], *, recruited: bool = False) -> list[Line]:
    """Commission lines for one conversion.

    ``period_amounts`` are the amounts of the affiliate's approved conversions earlier in the
    period (their count and revenue place the affiliate in a tier).
    """
    lines = [*_referral_rewards(earning, plan)]
    if not _recurring_allows(earning, plan):
        return lines
    own = _own_lines(earning, plan, list(period_amounts))
    lines += own
    earned = sum(line.amount_cents for line in own)
    if recruited and plan.second_tier_bps and earned:
        lines.append(Line("recruiter", 2, f"{_pct(plan.second_tier_bps)} of the recruited affiliate's commission",
                          percent_of(earned, plan.second_tier_bps)))  # fmt: skip
    return [line for line in lines if line.amount_cents]


def _own_lines(earning: Earning, plan: PlanTerms, earlier: list[int]) -> list[Line]:
    amount = earning.amount_cents
    before = len(earlier) if plan.tier_basis == COUNT else sum(earlier)
    after = before + (1 if plan.tier_basis == COUNT else amount)
    if plan.tier_scope == MARGINAL:
        return _marginal(earning, plan, before, after)
    bps, flat, rule = rate_at(plan, after)
    lines = [Line("affiliate", 1, _describe(rule, bps, flat), flat + percent_of(amount, bps))]
    old_bps, old_flat, _ = rate_at(plan, before)
    if (bps, flat) != (old_bps, old_flat) and earlier:
        difference = sum(percent_of(a, bps) - percent_of(a, old_bps) for a in earlier) + len(earlier) * (
            flat - old_flat
        )
        if difference > 0:
            lines.append(Line("affiliate", 1, f"{rule} reached: the period's {len(earlier)} earlier conversions "
                                              f"at the new rate", difference))  # fmt: skip
    return lines


def _marginal(earning: Earning, plan: PlanTerms, before: int, after: int) -> list[Line]:
    bps, flat, rule = rate_at(plan, before)
    if plan.tier_basis == COUNT or earning.amount_cents == 0:
        return [Line("affiliate", 1, _describe(rule, bps, flat), flat + percent_of(earning.amount_cents, bps))]
    # Revenue basis: split the sale at every threshold it crosses; each part earns its own tier's rate.
    # The parts are summed in hundredths of a basis point and rounded once, so splitting a sale
    # never earns a cent more than not splitting it.
    cuts = sorted({before, after, *(t.threshold for t in plan.tiers if before < t.threshold < after)})
    exact, parts = 0, []
    for start, end in pairwise(cuts):
        part_bps, _, part_rule = rate_at(plan, start)
        exact += (end - start) * part_bps
        parts.append(f"{part_rule}: {_pct(part_bps)} of {end - start} cents")
    return [Line("affiliate", 1, "; ".join(parts) + (f"; {flat} cents flat" if flat else ""),
                 (exact + 5_000) // 10_000 + flat)]  # fmt: skip


def _recurring_allows(earning: Earning, plan: PlanTerms) -> bool:
    if earning.kind != "sale" or earning.first_sale:
        return True
    return plan.recurring_months is None or earning.months_since_first < plan.recurring_months


def _referral_rewards(earning: Earning, plan: PlanTerms) -> list[Line]:
    if earning.kind != "signup" or not earning.member_referral:
        return []
    return [
        Line("referrer", 1, "refer-a-friend reward", plan.referrer_reward_cents),
        Line("referee", 1, "welcome reward for signing up through a friend", plan.referee_reward_cents),
    ]


def _describe(rule: str, bps: int, flat: int) -> str:
    parts = [p for p in (f"{_pct(bps)} of the sale" if bps else "", f"{flat} cents flat" if flat else "") if p]
    return f"{rule}: {' + '.join(parts) or 'nothing'}"


def _pct(bps: int) -> str:
    return f"{bps // 100}.{bps % 100:02d}%"


def _unit(plan: PlanTerms) -> str:
    return "conversions" if plan.tier_basis == COUNT else "cents of revenue"
