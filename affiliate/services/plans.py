"""Commission plan versions: a change is a new version from a moment on, never an edit of history.

Which version pays a conversion is decided by ``standing.plan_in_force`` (docs/money.md, "Plans and
their versions"): the affiliate's own version in force at the conversion's ``occurred_at``, else the
program default's.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from affiliate.models import CommissionPlan, CommissionTier, Conversion, Program
from affiliate.money import format_amount
from affiliate.services import audit
from affiliate.services.commissions import COUNT, MARGINAL, REVENUE, WHOLE_PERIOD, PlanTerms

# A program's first plan covers its whole history, however far back a conversion is dated.
PLAN_BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIERS = 20  # tiers a plan version may have (the API and the plan editor alike)


def currency_now(session: Session, program_id: int) -> str:
    """The program's currency, read to record an amount in it: on PostgreSQL under a key-share lock, which waits
    for a currency change in progress (it holds the program FOR UPDATE) and reads what it set, and makes a change
    that starts after it wait for this transaction and count what it records. SQLite's one writer does the same."""
    query = select(Program.currency).where(Program.id == program_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True, key_share=True)
    return session.scalar(query)


class PlanError(ValueError):
    """Terms a plan cannot have; the message says which and why."""


def validate(terms: PlanTerms) -> None:
    """Refuse terms the arithmetic cannot pay: negative amounts, rates outside 0-100%, repeated thresholds."""
    if terms.tier_basis not in (COUNT, REVENUE):
        raise PlanError("Tiers count conversions or revenue.")
    if terms.tier_scope not in (WHOLE_PERIOD, MARGINAL):
        raise PlanError("A tier applies to the whole period or to the volume beyond its threshold.")
    amounts = [terms.flat_cents, terms.referrer_reward_cents, terms.referee_reward_cents, terms.bonus_cents]
    rates = [terms.percent_bps, terms.second_tier_bps]
    for tier in terms.tiers:
        amounts.append(tier.flat_cents)
        rates.append(tier.percent_bps)
        if tier.threshold < 1:
            raise PlanError("A tier's threshold is at least 1.")
    if any(amount < 0 for amount in amounts):
        raise PlanError("Amounts cannot be negative.")
    if any(not 0 <= rate <= 10_000 for rate in rates):
        raise PlanError("Percentages are between 0% and 100%.")
    if len(terms.tiers) > MAX_TIERS:
        raise PlanError(f"A plan has at most {MAX_TIERS} tiers.")
    if len({tier.threshold for tier in terms.tiers}) != len(terms.tiers):
        raise PlanError("Two tiers cannot start at the same threshold.")
    if terms.recurring_months is not None and not 0 <= terms.recurring_months <= 1200:
        raise PlanError("Recurring months are between 0 and 1,200, or for life.")
    if (terms.bonus_threshold is None) != (terms.bonus_cents == 0):
        raise PlanError("A performance bonus needs both an amount and the volume that earns it.")
    if terms.bonus_threshold is not None and terms.bonus_threshold < 1:
        raise PlanError("A performance bonus's threshold is at least 1.")


def save_plan(
    session: Session,
    program_id: int,
    terms: PlanTerms,
    *,
    affiliate_id: int | None = None,
    group_id: int | None = None,
    effective_from: datetime | None,
    actor_id: int | None,
    now: datetime,
    currency: str | None = None,
) -> CommissionPlan:
    """Add a plan version (the program default, a partner group's, or an affiliate's own) in force from
    ``effective_from``. ``currency``: the one the terms' amounts were entered in; refused if the program's changed
    meanwhile (5.00 typed as dollars must not pay 500 yen).

    ``effective_from=None`` makes opening terms, in force for every conversion however old (a demo's or an
    import's history): allowed only while nothing of the program has been evaluated, so no accrued
    commission was worked out by other terms.
    """
    validate(terms)
    if currency is not None and (now_in := currency_now(session, program_id)) != currency:
        raise PlanError(f"The program's currency changed to {now_in} meanwhile: check the amounts and save again.")
    if affiliate_id is not None and group_id is not None:
        raise PlanError("A plan belongs to a group or to one affiliate, not both.")
    if effective_from is None:
        evaluated = select(Conversion.id).where(
            Conversion.program_id == program_id, Conversion.evaluated_at.is_not(None)
        )
        if session.scalar(evaluated.limit(1)) is not None:
            raise PlanError("Opening terms are for a program none of whose conversions has been evaluated yet.")
        effective_from = PLAN_BEGINNING
    elif effective_from < now:
        raise PlanError("A plan change applies from now or a later moment, never to the past.")
    fields = asdict(terms)
    tiers = fields.pop("tiers")
    plan = CommissionPlan(
        program_id=program_id,
        affiliate_id=affiliate_id,
        group_id=group_id,
        effective_from=effective_from,
        created_by_id=actor_id,
        created_at=now,
        **fields,
    )
    plan.tiers = [CommissionTier(**tier) for tier in sorted(tiers, key=lambda tier: tier["threshold"])]
    session.add(plan)
    session.flush()
    audit.record(
        session,
        actor_id=actor_id,
        action="plan.version_added",
        subject_type="program",
        subject_id=program_id,
        before=None,
        after={
            "plan_id": plan.id,
            "affiliate_id": affiliate_id,
            "group_id": group_id,
            "effective_from": effective_from,
            **asdict(terms),
        },
        now=now,
    )
    return plan


def bps_to_percent(bps: int) -> str:
    return f"{bps // 100}" if bps % 100 == 0 else f"{bps / 100:.2f}".rstrip("0")


def in_words(terms: PlanTerms, currency: str) -> str:
    """A plan in words, as affiliates and admins read it."""
    parts = []
    if terms.percent_bps:
        parts.append(f"{bps_to_percent(terms.percent_bps)}% of each sale")
    if terms.flat_cents:
        parts.append(f"{format_amount(terms.flat_cents, currency)} per conversion")
    text = " + ".join(parts) or "nothing per conversion"
    for tier in terms.tiers:
        at = format_amount(tier.threshold, currency) if terms.tier_basis == REVENUE else f"{tier.threshold} sales"
        pay = " + ".join(
            p
            for p in (
                f"{bps_to_percent(tier.percent_bps)}%" if tier.percent_bps else "",
                format_amount(tier.flat_cents, currency) if tier.flat_cents else "",
            )
            if p
        )
        text += f"; from {at} in a month: {pay or 'nothing'}"
    if terms.tiers:
        text += " (whole month)" if terms.tier_scope == WHOLE_PERIOD else " (beyond each threshold)"
    if terms.recurring_months is None:
        text += "; repeat sales earn for the customer's lifetime"
    elif terms.recurring_months:
        text += f"; repeat sales earn for {terms.recurring_months} months"
    if terms.second_tier_bps:
        text += f"; recruiters earn {bps_to_percent(terms.second_tier_bps)}% of their recruits' commissions"
    if terms.bonus_threshold is not None:
        at = (
            format_amount(terms.bonus_threshold, currency) + " of sales"
            if terms.tier_basis == REVENUE
            else f"{terms.bonus_threshold} sale{'s' if terms.bonus_threshold != 1 else ''}"
        )
        text += f"; plus a {format_amount(terms.bonus_cents, currency)} bonus at {at} this month (once a month)"
    if terms.referrer_reward_cents or terms.referee_reward_cents:
        text += (
            f"; refer-a-friend: {format_amount(terms.referrer_reward_cents, currency)} to the referrer, "
            f"{format_amount(terms.referee_reward_cents, currency)} to the new member"
        )
    return text + "."
