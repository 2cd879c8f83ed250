"""A reference model of the commission rules in docs/money.md, written from that page alone.

Small and slow on purpose: plain dicts and lists, every rule spelled out where the page states it,
nothing shared with the services it checks. Amounts are integers in the currency's minor unit;
balances are what each beneficiary is owed (the ledger's credit, as a positive number).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

LIVE = ("pending", "approved", "paid")


@dataclass(frozen=True)
class Tier:
    threshold: int
    bps: int
    flat: int


@dataclass(frozen=True)
class Plan:
    flat: int = 0
    bps: int = 0
    basis: str = "count"  # count | revenue
    scope: str = "whole_period"  # whole_period | marginal
    tiers: tuple[Tier, ...] = ()
    second_tier_bps: int = 0
    recurring_months: int | None = 0  # None: for life
    referrer_reward: int = 0
    referee_reward: int = 0
    bonus_threshold: int | None = None  # sales, or revenue, of a month; None: no performance bonus
    bonus: int = 0


@dataclass
class Conversion:
    id: int
    type: str  # signup | sale
    amount: int
    affiliate: int | None  # who it is credited to
    customer: str | None  # the external customer id, else "user:<id>" for a member, else None
    member: int | None  # the member who signed up (customer_user_id)
    occurred_at: datetime
    created_at: datetime  # when Clicktrail learned of it
    status: str = "pending"
    evaluated: int | None = None  # its place in the order of evaluation
    counts: bool = False  # evaluated and earning under the recurring rule
    refunded: int = 0


@dataclass
class Commission:
    conversion: int
    beneficiary: int
    level: int
    kind: str  # earning | raise | second_tier | referrer_reward | referee_reward | performance_bonus
    amount: int
    available_at: datetime
    status: str = "pending"
    reversed: int = 0  # what refunds have taken back
    taken_back_by: str | None = None  # "refund", "finance" (a hand rejection) or "review"
    payout: int | None = None


@dataclass
class Payout:
    affiliate: int
    amount: int
    status: str = "pending"


@dataclass
class Model:
    hold_days: int
    recruiter: dict[int, int | None]  # affiliate -> the active affiliate who recruited them
    referred_by: dict[int, int | None]  # member -> who referred them
    plans: list[tuple[int | None, datetime, int, Plan]] = field(default_factory=list)
    conversions: dict[int, Conversion] = field(default_factory=dict)
    commissions: list[Commission] = field(default_factory=list)
    payouts: list[Payout] = field(default_factory=list)
    pending: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    payable: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    evaluations: int = 0

    # Plans and their versions

    def add_plan(self, affiliate: int | None, effective_from: datetime, plan: Plan) -> None:
        self.plans.append((affiliate, effective_from, len(self.plans), plan))

    def plan_for(self, affiliate: int, at: datetime) -> Plan | None:
        """The affiliate's own version in force at ``at``, else the program default's; None when neither is."""
        for owner in (affiliate, None):
            versions = [(start, n, plan) for who, start, n, plan in self.plans if who == owner and start <= at]
            if versions:
                return max(versions, key=lambda version: (version[0], version[1]))[2]
        return None

    # Conversions and refunds as they are reported

    def record(self, conversion: Conversion) -> None:
        self.conversions[conversion.id] = conversion

    def refund(self, sale_id: int, amount: int | None) -> bool:
        """Refunds never add up to more than the sale; None refunds what is left."""
        sale = self.conversions[sale_id]
        left = sale.amount - sale.refunded
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            return False
        sale.refunded += amount
        return True

    # The money job

    def run(self, now: datetime) -> None:
        """Evaluate every evaluable conversion once, by id, then reverse the refunded share of every commission."""
        for conversion in sorted(self.conversions.values(), key=lambda c: c.id):
            if (
                conversion.evaluated is None
                and conversion.affiliate is not None
                and conversion.status in ("pending", "approved")
            ):
                self.evaluate(conversion)
        self.reverse_refunds()

    def evaluate(self, x: Conversion) -> None:
        a = x.affiliate
        plan = self.plan_for(a, x.occurred_at)
        self.evaluations += 1
        if plan is None:  # no version in force: it earns nothing
            x.evaluated = self.evaluations
            return
        if x.type == "sale" and not self.recurring_allows(x, plan):
            x.evaluated = self.evaluations  # a repeat sale past its months: nothing, and no tier volume
            return
        counted = [y for y in self.conversions.values() if self.counted_for(y, x)]
        if plan.basis == "count":
            before, after = len(counted), len(counted) + 1
        else:
            before = sum(y.amount - y.refunded for y in counted)
            after = before + x.amount
        tier_one: list[tuple[Conversion, str, int, datetime]] = []  # (conversion, kind, amount, due)
        if plan.scope == "whole_period":
            rate = rate_at(plan, after)
            tier_one.append((x, "earning", earn(x.amount, rate), self.due(x)))
            # Only a tier brings the period up: a higher base rate after a plan change is not a raise
            # (a 5.00 per signup plan added later pays no past signup; see the stories in the test).
            for y in counted if reached_tier(plan, after) else []:
                target = earn(y.amount, rate)
                brought = sum(
                    c.amount
                    for c in self.commissions
                    if c.conversion == y.id and c.beneficiary == a and c.kind in ("earning", "raise")
                )
                if target > brought:
                    tier_one.append((y, "raise", target - brought, self.due(x, y)))
        elif plan.basis == "count":
            tier_one.append((x, "earning", earn(x.amount, rate_at(plan, after)), self.due(x)))
        else:
            tier_one.append((x, "earning", marginal_revenue(plan, before, after), self.due(x)))
        x.evaluated, x.counts = self.evaluations, True
        for conversion, kind, amount, due in tier_one:
            self.add(conversion, a, 1, kind, amount, due)
        recruiter = self.recruiter.get(a)
        if recruiter is not None and plan.second_tier_bps:
            for conversion, _, amount, due in tier_one:  # a share is due when the commission it is taken of is
                self.add(conversion, recruiter, 2, "second_tier", percent_of(amount, plan.second_tier_bps), due)
        crosses = plan.bonus_threshold is not None and before < plan.bonus_threshold <= after
        # Once a month while a bonus of the month is live.
        if x.type == "sale" and crosses and not self.bonus_paid(a, x.occurred_at):
            self.add(x, a, 1, "performance_bonus", plan.bonus, self.due(x))
        if x.type == "signup" and x.member is not None and self.referred_by.get(x.member) == a:
            self.add(x, a, 1, "referrer_reward", plan.referrer_reward, self.due(x))
            self.add(x, x.member, 1, "referee_reward", plan.referee_reward, self.due(x))

    def bonus_paid(self, affiliate: int, at: datetime) -> bool:
        """Whether a pending, approved or paid performance bonus of ``at``'s month is the affiliate's already."""
        return any(
            c.kind == "performance_bonus"
            and c.beneficiary == affiliate
            and c.status in LIVE
            and (self.conversions[c.conversion].occurred_at.year, self.conversions[c.conversion].occurred_at.month)
            == (at.year, at.month)
            for c in self.commissions
        )

    def recurring_allows(self, x: Conversion, plan: Plan) -> bool:
        """A first sale earns; a repeat sale while X.occurred_at < add_months(first sale, recurring months)."""
        if x.customer is None:
            return True
        earlier = [
            y
            for y in self.conversions.values()
            if y.type == "sale"
            and y.affiliate == x.affiliate
            and y.customer == x.customer
            and y.status != "rejected"
            and (y.occurred_at, y.id) < (x.occurred_at, x.id)
        ]
        if not earlier:
            return True
        if plan.recurring_months is None:
            return True
        first = min(earlier, key=lambda y: (y.occurred_at, y.id))
        return x.occurred_at < add_months(first.occurred_at, plan.recurring_months)

    def counted_for(self, y: Conversion, x: Conversion) -> bool:
        """Whether Y is one of the counted conversions of X's period."""
        return (
            y.id != x.id
            and y.affiliate == x.affiliate
            and y.type == x.type
            and (y.occurred_at.year, y.occurred_at.month) == (x.occurred_at.year, x.occurred_at.month)
            and y.evaluated is not None
            and y.status != "rejected"
            and not (y.type == "sale" and y.refunded >= y.amount)
            and y.counts
            and not any(c.conversion == y.id and c.status == "rejected" for c in self.commissions)
        )

    def due(self, *conversions: Conversion) -> datetime:
        """Hold days after the latest of these conversions was learned of."""
        return max(c.created_at for c in conversions) + timedelta(days=self.hold_days)

    def add(self, conversion: Conversion, beneficiary: int, level: int, kind: str, amount: int, due: datetime) -> None:
        if amount == 0:
            return
        self.commissions.append(Commission(conversion.id, beneficiary, level, kind, amount, due))
        self.pending[beneficiary] += amount

    def reverse_refunds(self) -> None:
        """Each live commission of a sale with F of S refunded has had floor(c x F / S) reversed."""
        for c in self.commissions:
            sale = self.conversions[c.conversion]
            if c.status not in LIVE or sale.type != "sale" or not sale.refunded:
                continue
            wanted = c.amount * sale.refunded // sale.amount
            share = wanted - c.reversed
            if share > 0:
                c.reversed = wanted
                balance = self.pending if c.status == "pending" else self.payable
                balance[c.beneficiary] -= share
            if sale.refunded >= sale.amount:
                c.status, c.taken_back_by = "reversed", "refund"

    # Holds and approval

    def approve(self, c: Commission) -> bool:
        if c.status != "pending" or self.conversions[c.conversion].status in ("flagged", "rejected"):
            return False
        remaining = c.amount - c.reversed
        self.pending[c.beneficiary] -= remaining
        self.payable[c.beneficiary] += remaining
        c.status = "approved"
        return True

    def reject(self, c: Commission) -> bool:
        if c.status != "pending":
            return False
        self.pending[c.beneficiary] -= c.amount - c.reversed
        c.status, c.taken_back_by = "rejected", "finance"
        return True

    def approve_due(self, now: datetime) -> int:
        due = [
            c
            for c in self.commissions
            if c.status == "pending"
            and c.available_at <= now
            and self.conversions[c.conversion].status in ("pending", "approved")
        ]
        return sum(self.approve(c) for c in due)

    # Review

    def decide(self, conversion_id: int, decision: str) -> None:
        conversion = self.conversions[conversion_id]
        if decision == "approve":
            conversion.status = "approved"
            return
        conversion.status = "rejected"
        for c in self.commissions:
            if c.conversion != conversion_id or c.status not in LIVE:
                continue
            remaining = c.amount - c.reversed
            if c.status == "pending":
                self.pending[c.beneficiary] -= remaining
                c.status = "rejected"
            else:
                self.payable[c.beneficiary] -= remaining
                c.status = "reversed"
            c.taken_back_by = "review"

    # Payouts

    def build_batch(self, affiliates: list[int], minimum: int) -> dict[int, int]:
        """A payout of each given affiliate's whole payable balance when it reaches the minimum."""
        built = {}
        for affiliate in sorted(affiliates):
            amount = self.payable[affiliate]
            if amount < minimum or amount <= 0:
                continue
            self.payouts.append(Payout(affiliate, amount))
            number = len(self.payouts) - 1
            self.payable[affiliate] -= amount
            for c in self.commissions:
                if c.beneficiary == affiliate and c.status == "approved" and c.payout is None:
                    c.payout = number
            built[affiliate] = number
        return built

    def approve_batch(self, numbers: list[int]) -> None:
        for number in numbers:
            if self.payouts[number].status == "pending":
                self.payouts[number].status = "approved"

    def mark_paid(self, number: int) -> bool:
        if self.payouts[number].status != "approved":
            return False
        self.payouts[number].status = "paid"
        for c in self.commissions:
            if c.payout == number and c.status == "approved":
                c.status = "paid"
        return True

    def mark_failed(self, number: int) -> bool:
        payout = self.payouts[number]
        if payout.status != "approved":
            return False
        payout.status = "failed"
        self.payable[payout.affiliate] += payout.amount
        for c in self.commissions:
            if c.payout == number:
                c.payout = None
        return True


def percent_of(amount: int, bps: int) -> int:
    """Half up: (amount x bps + 5,000) // 10,000."""
    return (amount * bps + 5_000) // 10_000


def rate_at(plan: Plan, volume: int) -> Tier:
    """The tier with the highest threshold <= volume; below every threshold, the base rate."""
    reached = [tier for tier in plan.tiers if tier.threshold <= volume]
    if not reached:
        return Tier(0, plan.bps, plan.flat)
    return max(reached, key=lambda tier: tier.threshold)


def reached_tier(plan: Plan, volume: int) -> bool:
    return any(tier.threshold <= volume for tier in plan.tiers)


def earn(amount: int, rate: Tier) -> int:
    return percent_of(amount, rate.bps) + rate.flat


def marginal_revenue(plan: Plan, before: int, after: int) -> int:
    """The amount covers [before, after), cut at each threshold inside; parts summed exactly, rounded once."""
    cuts = [before, *sorted(t.threshold for t in plan.tiers if before < t.threshold < after), after]
    exact = sum((end - start) * rate_at(plan, start).bps for start, end in pairwise(cuts))
    return (exact + 5_000) // 10_000 + rate_at(plan, after).flat


def add_months(moment: datetime, months: int) -> datetime:
    """Same time of day, ``months`` later, on the month's last day when it is shorter."""
    year, month = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + year, month + 1
    last_day = calendar.monthrange(year, month)[1]
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))
