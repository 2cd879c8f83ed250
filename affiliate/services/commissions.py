"""Commission arithmetic: a conversion, its plan and its period in; commission lines out.

Pure functions in integer minor units. The rules are stated in full in docs/money.md; in short:

- Percentages are basis points (1 bps = 0.01%). ``percent_of`` rounds half up, explicitly:
  (amount x bps + 5,000) // 10,000. Nothing here is ever a float.
- Volume tiers: ``rate_at(plan, volume)`` is the tier with the highest threshold <= volume, else the
  base rate. Thresholds are inclusive. Volume is counted in conversions or in revenue within the
  period (a calendar month), and the conversion being evaluated counts in full.
- Scope ``whole_period``: the conversion earns the rate the period reaches with it. When that rate is a
  tier, every other counted conversion of the period whose commissions so far are below what the tier
  gives it gets a *raise* of the difference, a commission of its own. Nothing is ever lowered.
- Scope ``marginal``: by count, the conversion earns the rate of its own position (the one that reaches
  a threshold earns that tier); by revenue, the sale is cut at every threshold it crosses, each part
  earns its own tier's percentage, and the parts are rounded once.
- Recurring: a repeat sale earns while ``occurred_at < add_months(first sale, recurring_months)``
  (0: the first sale only; None: always).
- Second tier: the recruiter gets ``second_tier_bps`` of each rounded tier-1 commission (raises too).
- Refer-a-friend: a referred member's signup rewards the referrer and the member with fixed amounts.
- Performance bonus: the sale whose evaluation takes the month's sales volume (counted as tiers count it,
  by ``tier_basis``) from below ``bonus_threshold`` to it or past it earns ``bonus_cents``, once a month;
  the caller says whether the month already has one. No second tier is taken of it.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

WHOLE_PERIOD = "whole_period"
MARGINAL = "marginal"
COUNT = "count"
REVENUE = "revenue"
Money = Callable[[int], str]  # an amount in minor units as a rule's words write it


@dataclass(frozen=True)
class TierRate:
    threshold: int  # conversions, or revenue in minor units, from which the tier applies
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
    bonus_threshold: int | None = None  # sales, or revenue in minor units, as tier_basis says; None: no bonus
    bonus_cents: int = 0


@dataclass(frozen=True)
class Rate:
    percent_bps: int
    flat_cents: int
    rule: str
    is_tier: bool


@dataclass(frozen=True)
class PaidConversion:
    """The conversion being evaluated."""

    kind: str  # "signup" | "sale"
    amount_cents: int
    member_referral: bool = False  # the signup of a member referred by the affiliate


@dataclass(frozen=True)
class Counted:
    """A conversion already counted in the period: what it weighs and what it has been brought to."""

    conversion_id: int
    amount_cents: int
    net_cents: int  # the amount less refunds so far
    brought_cents: int  # its own tier-1 commissions so far (earning and raises), before refunds


@dataclass(frozen=True)
class CommissionLine:
    beneficiary: str  # "affiliate" | "recruiter" | "referrer" | "referee"
    kind: str  # "earning" | "raise" | "second_tier" | "referrer_reward" | "referee_reward" | "performance_bonus"
    rule: str  # which rule produced the amount, in words
    amount_cents: int
    raised_id: int | None = None  # a raise (or its second tier): the conversion it belongs to

    @property
    def tier_level(self) -> int:
        return 2 if self.beneficiary == "recruiter" else 1


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


def reversal_share(commission_cents: int, refunded_before: int, refunded_after: int, sale_cents: int) -> int:
    """What one refund takes back of a commission: the floors of its refunded share after and before it."""
    return commission_cents * refunded_after // sale_cents - commission_cents * refunded_before // sale_cents


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later, on the month's last day when it is shorter (Jan 31 + 1 = Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def period_of(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) a conversion's tiers count in: [its first instant, the next month's)."""
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, add_months(start, 1)


def recurring_earns(plan: PlanTerms, occurred_at: datetime, first_sale_at: datetime | None) -> bool:
    """Whether a sale earns: a first sale always; a repeat sale inside the plan's recurring months."""
    if first_sale_at is None:
        return True
    if plan.recurring_months is None:
        return True
    return occurred_at < add_months(first_sale_at, plan.recurring_months)


def rate_at(plan: PlanTerms, volume: int, money: Money = str) -> Rate:
    """The rate at a period volume: the tier with the highest threshold reached, else the base rate. ``money``
    writes an amount in the rule's words (the currency's way; bare minor units by default)."""
    reached = [tier for tier in plan.tiers if tier.threshold <= volume]
    if not reached:
        return Rate(plan.percent_bps, plan.flat_cents, "base rate", is_tier=False)
    tier = max(reached, key=lambda t: t.threshold)
    threshold = str(tier.threshold) if plan.tier_basis == COUNT else money(tier.threshold)
    return Rate(tier.percent_bps, tier.flat_cents, f"tier from {threshold} {_unit(plan)}", is_tier=True)


def earned_at(amount_cents: int, rate: Rate) -> int:
    return percent_of(amount_cents, rate.percent_bps) + rate.flat_cents


def evaluate(
    conversion: PaidConversion,
    plan: PlanTerms,
    period: Sequence[Counted],
    *,
    recruited: bool = False,
    bonus_paid: bool = False,
    money: Money = str,
) -> list[CommissionLine]:
    """Every commission one evaluation creates: rewards, the conversion's earning, raises, second tier, bonus.

    ``period`` holds the affiliate's counted conversions of the period evaluated before this one.
    The caller has already decided that the conversion earns (the recurring rule), and says with
    ``bonus_paid`` whether the period already has its performance bonus. ``money`` writes the amounts in each
    line's rule (the conversion's currency, as the money job and the plan editor give it).
    """
    lines = _referral_rewards(conversion, plan)
    own = _own(conversion, plan, period, money)
    lines += own
    if not bonus_paid:
        lines += [bonus] if (bonus := performance_bonus(conversion, plan, period, money)) else []
    if recruited and plan.second_tier_bps:
        share = _pct(plan.second_tier_bps)
        lines += [
            CommissionLine(
                "recruiter",
                "second_tier",
                f"{share} of the recruited affiliate's {line.kind}",
                percent_of(line.amount_cents, plan.second_tier_bps),
                line.raised_id,
            )
            for line in own
        ]
    return [line for line in lines if line.amount_cents > 0]


def performance_bonus(
    conversion: PaidConversion, plan: PlanTerms, period: Sequence[Counted], money: Money = str
) -> CommissionLine | None:
    """The plan's bonus when this sale takes the period's volume across the bonus threshold, else None.

    Crossing is ``volume before < threshold <= volume after``: the sale that reaches the threshold
    exactly earns it, and a period already past it (say, under a version without a bonus) earns none.
    Signups never count towards it nor earn it.
    """
    if conversion.kind != "sale" or plan.bonus_threshold is None or plan.bonus_cents <= 0:
        return None
    before = volume_of(plan, period)
    after = before + (1 if plan.tier_basis == COUNT else conversion.amount_cents)
    if not before < plan.bonus_threshold <= after:
        return None
    at = f"{plan.bonus_threshold} sales" if plan.tier_basis == COUNT else f"{money(plan.bonus_threshold)} of revenue"
    return CommissionLine(
        "affiliate", "performance_bonus", f"performance bonus: {at} reached in the month", plan.bonus_cents
    )


def volume_of(plan: PlanTerms, period: Sequence[Counted]) -> int:
    """The period's volume before the conversion being evaluated."""
    if plan.tier_basis == COUNT:
        return len(period)
    return sum(counted.net_cents for counted in period)


def _own(conversion: PaidConversion, plan: PlanTerms, period: Sequence[Counted], money: Money) -> list[CommissionLine]:
    amount = conversion.amount_cents
    before = volume_of(plan, period)
    after = before + (1 if plan.tier_basis == COUNT else amount)
    if plan.tier_scope == MARGINAL and plan.tier_basis == REVENUE and amount:
        return [_marginal_revenue(plan, amount, before, after, money)]
    rate = rate_at(plan, after, money)
    lines = [CommissionLine("affiliate", "earning", _describe(rate, money), earned_at(amount, rate))]
    if plan.tier_scope == MARGINAL or not rate.is_tier:
        return lines
    for counted in period:
        raise_cents = earned_at(counted.amount_cents, rate) - counted.brought_cents
        if raise_cents > 0:
            rule = f"{rate.rule} reached in the period: brought to {_describe(rate, money)}"
            lines.append(CommissionLine("affiliate", "raise", rule, raise_cents, counted.conversion_id))
    return lines


def _marginal_revenue(plan: PlanTerms, amount: int, before: int, after: int, money: Money) -> CommissionLine:
    # Each part earns its own tier's percentage; the parts are summed in hundredths of a basis point
    # and rounded once, so splitting a sale never earns a cent more than not splitting it.
    cuts = sorted({before, after, *(t.threshold for t in plan.tiers if before < t.threshold < after)})
    exact, parts = 0, []
    for start, end in pairwise(cuts):
        rate = rate_at(plan, start, money)
        exact += (end - start) * rate.percent_bps
        parts.append(f"{rate.rule}: {_pct(rate.percent_bps)} of {money(end - start)}")
    flat = rate_at(plan, after).flat_cents
    rule = "; ".join(parts) + (f"; {money(flat)} flat" if flat else "")
    return CommissionLine("affiliate", "earning", rule, (exact + 5_000) // 10_000 + flat)


def _referral_rewards(conversion: PaidConversion, plan: PlanTerms) -> list[CommissionLine]:
    if conversion.kind != "signup" or not conversion.member_referral:
        return []
    return [
        CommissionLine("referrer", "referrer_reward", "refer-a-friend reward", plan.referrer_reward_cents),
        CommissionLine(
            "referee", "referee_reward", "welcome reward for signing up through a friend", plan.referee_reward_cents
        ),
    ]


def _describe(rate: Rate, money: Money) -> str:
    parts = [
        part
        for part in (
            f"{_pct(rate.percent_bps)} of the sale" if rate.percent_bps else "",
            f"{money(rate.flat_cents)} flat" if rate.flat_cents else "",
        )
        if part
    ]
    return f"{rate.rule}: {' + '.join(parts) or 'nothing'}"


def _pct(bps: int) -> str:
    return f"{bps // 100}.{bps % 100:02d}%"


def _unit(plan: PlanTerms) -> str:
    return "conversions" if plan.tier_basis == COUNT else "of revenue"
