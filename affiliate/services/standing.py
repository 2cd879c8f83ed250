"""What a plan pays an affiliate: the plan version in force for them, its terms, and their counted conversions.

Accrual reads these to decide a commission; the portal reads the same to show an affiliate's plan and
how far they are from the next tier, so both see one answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from affiliate.models import (
    Commission,
    CommissionKind,
    CommissionPlan,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    GroupMembership,
    PartnerGroup,
)
from affiliate.services.commissions import Counted, PlanTerms, Rate, TierRate, period_of, rate_at, volume_of

EVALUABLE = (ConversionStatus.PENDING, ConversionStatus.APPROVED)
OWN_KINDS = (CommissionKind.EARNING, CommissionKind.RAISE)

# The statements below are built once, their values bound at execution: building a select() with its
# correlated subqueries, and its cache key, on every call cost several times more than running it.
_GROUP = select(GroupMembership.group_id).where(
    GroupMembership.program_id == bindparam("program_id"), GroupMembership.affiliate_id == bindparam("affiliate_id")
)


def _plan_in_force(of_affiliate: bool, of_group: bool):
    owners = [and_(CommissionPlan.affiliate_id.is_(None), CommissionPlan.group_id.is_(None))]
    if of_affiliate:
        owners.append(CommissionPlan.affiliate_id == bindparam("affiliate_id"))
    if of_group:
        owners.append(and_(CommissionPlan.affiliate_id.is_(None), CommissionPlan.group_id == bindparam("group_id")))
    precedence = case((CommissionPlan.affiliate_id.is_not(None), 0), (CommissionPlan.group_id.is_not(None), 1), else_=2)
    return (
        select(CommissionPlan)
        .options(selectinload(CommissionPlan.tiers))
        .where(
            CommissionPlan.program_id == bindparam("program_id"),
            or_(*owners),
            CommissionPlan.effective_from <= bindparam("at"),
        )
        .order_by(precedence, CommissionPlan.effective_from.desc(), CommissionPlan.id.desc())
        .limit(1)
    )


# By (an affiliate is named, they are in a partner group).
_PLAN_IN_FORCE = {(False, False): _plan_in_force(False, False)} | {
    (True, of_group): _plan_in_force(True, of_group) for of_group in (False, True)
}

_own = and_(
    Commission.conversion_id == Conversion.id,
    Commission.affiliate_id == bindparam("affiliate_id"),
    Commission.tier_level == 1,
    Commission.kind.in_(OWN_KINDS),
)
_refunds = aliased(Conversion)
_in_period = (
    Conversion.program_id == bindparam("program_id"),
    Conversion.affiliate_id == bindparam("affiliate_id"),
    Conversion.type == bindparam("kind"),
    Conversion.occurred_at >= bindparam("start"),
    Conversion.occurred_at < bindparam("end"),
    Conversion.id != bindparam("leaving_out"),
    Conversion.evaluated_at.is_not(None),
    Conversion.counts_for_tiers.is_(True),
    Conversion.status.in_(EVALUABLE),
)
_LOCK_COUNTED = select(Conversion.id).where(*_in_period).order_by(Conversion.id).with_for_update(key_share=True)
_COUNTED = (
    select(
        Conversion.id,
        Conversion.amount_cents,
        select(func.coalesce(func.sum(_refunds.amount_cents), 0))
        .where(_refunds.refund_of_id == Conversion.id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(Commission.amount_cents), 0)).where(_own).scalar_subquery(),
    )
    .where(*_in_period, ~exists().where(_own, Commission.status == CommissionStatus.REJECTED))
    .order_by(Conversion.id)
)


def terms_of(plan: CommissionPlan | None) -> PlanTerms:
    """A stored plan version as the arithmetic reads it; no plan pays nothing."""
    if plan is None:
        return PlanTerms()
    return PlanTerms(
        flat_cents=plan.flat_cents,
        percent_bps=plan.percent_bps,
        tier_basis=plan.tier_basis,
        tier_scope=plan.tier_scope,
        tiers=tuple(TierRate(t.threshold, t.percent_bps, t.flat_cents) for t in plan.tiers),
        second_tier_bps=plan.second_tier_bps,
        recurring_months=plan.recurring_months,
        referrer_reward_cents=plan.referrer_reward_cents,
        referee_reward_cents=plan.referee_reward_cents,
        bonus_threshold=plan.bonus_threshold,
        bonus_cents=plan.bonus_cents,
    )


def plan_in_force(session: Session, program_id: int, affiliate_id: int | None, at: datetime) -> CommissionPlan | None:
    """The plan version that pays a conversion of ``at``, by precedence (docs/money.md): the affiliate's
    own version in force, else their partner group's, else the program's (the default group's)."""
    group_id = None
    if affiliate_id is not None:
        group_id = session.scalar(_GROUP, {"program_id": program_id, "affiliate_id": affiliate_id})
    statement = _PLAN_IN_FORCE[affiliate_id is not None, group_id is not None]
    return session.scalar(
        statement, {"program_id": program_id, "affiliate_id": affiliate_id, "group_id": group_id, "at": at}
    )


def plan_terms(session: Session, program_id: int, affiliate_id: int | None, at: datetime) -> PlanTerms:
    """The terms in force for an affiliate on a program at a moment."""
    return terms_of(plan_in_force(session, program_id, affiliate_id, at))


def plan_label(session: Session, plan: CommissionPlan) -> str:
    """Which plan version paid, and whose plan it is: the program's default group, a named group or one
    affiliate's own (each commission's rule ends with it)."""
    if plan.affiliate_id is not None:
        whose = "the affiliate's own plan"
    elif plan.group_id is not None:
        group = session.get(PartnerGroup, plan.group_id)
        whose = f"group {group.name}" if group else "a partner group"
    else:
        whose = "default group"
    return f"plan version {plan.id}, {whose}"


@dataclass(frozen=True)
class Progress:
    """Where an affiliate stands in a program's sale tiers this month."""

    terms: PlanTerms
    volume: int  # sales counted, or their revenue net of refunds, in minor units
    rate: Rate  # what the next sale would be paid at if it did not reach a tier itself
    next_tier: TierRate | None
    period_end: datetime


def progress(session: Session, program_id: int, affiliate_id: int, now: datetime) -> Progress:
    """The plan in force for this affiliate now, their counted sales this month and the next threshold."""
    terms = plan_terms(session, program_id, affiliate_id, now)
    counted = counted_in_period(session, program_id, affiliate_id, ConversionType.SALE, now)
    volume = volume_of(terms, counted)
    ahead = [tier for tier in terms.tiers if tier.threshold > volume]
    return Progress(
        terms=terms,
        volume=volume,
        rate=rate_at(terms, volume),
        next_tier=min(ahead, key=lambda tier: tier.threshold) if ahead else None,
        period_end=period_of(now)[1],
    )


def counted_in_period(
    session: Session,
    program_id: int,
    affiliate_id: int,
    kind: str,
    at: datetime,
    *,
    leaving_out: int | None = None,
    lock: bool = False,
) -> list[Counted]:
    """An affiliate's conversions of one type that count towards the tiers of the month holding ``at``."""
    start, end = period_of(at)
    values = {
        "program_id": program_id,
        "affiliate_id": affiliate_id,
        "kind": kind,
        "start": start,
        "end": end,
        "leaving_out": leaving_out or 0,
    }
    if lock:
        # Raises read what these have been brought to and what was refunded of them.
        session.execute(_LOCK_COUNTED, values).all()
    rows = session.execute(_COUNTED, values).all()
    counted = []
    for conversion_id, amount, refunded, brought in rows:
        net = amount - int(refunded)
        if kind == ConversionType.SALE and net <= 0:
            continue  # fully refunded
        counted.append(Counted(conversion_id, amount, net, int(brought)))
    return counted
