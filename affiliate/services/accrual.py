"""Turn attributed conversions into pending commissions, each with its ledger accrual.

Runs after conversions are stored (``flask accrue-commissions``), so the conversion API's
short write stays short. It is idempotent: a conversion's commissions are unique per
(conversion, affiliate, tier level) and each accrual is a ledger transaction named after its
commission, so a crash or a second run adds nothing twice.

Ledger accounts: an accrual debits ``commission_expense`` and credits
``affiliate_pending:<id>``; approval (after the hold) will move it to ``affiliate_payable:<id>``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import (
    Commission,
    CommissionPlan,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.services.commissions import Earning, Line, PlanTerms, TierRate, compute
from affiliate.services.ledger import Leg, post

EARNING_STATUSES = (ConversionStatus.PENDING, ConversionStatus.APPROVED, ConversionStatus.FLAGGED)
LIVE_COMMISSIONS = (CommissionStatus.PENDING, CommissionStatus.APPROVED, CommissionStatus.PAID)


def plan_terms(session: Session, program_id: int, affiliate_id: int) -> PlanTerms:
    """The affiliate's own plan on the program if there is one, else the program's default."""
    plans = session.scalars(
        select(CommissionPlan)
        .where(CommissionPlan.program_id == program_id,
               (CommissionPlan.affiliate_id == affiliate_id) | CommissionPlan.affiliate_id.is_(None))
        .order_by(CommissionPlan.affiliate_id.is_(None), CommissionPlan.id.desc())
    ).all()  # fmt: skip
    if not plans:
        return PlanTerms()
    plan = plans[0]
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
    )


def accrue(session: Session, conversion: Conversion, *, now: datetime) -> list[Commission]:
    """Create the conversion's pending commissions and their accruals; none for unattributed or rejected ones."""
    if (
        conversion.affiliate_id is None
        or conversion.type == ConversionType.REFUND
        or conversion.status not in EARNING_STATUSES
    ):
        return []
    program = session.get(Program, conversion.program_id)
    affiliate = session.get(User, conversion.affiliate_id)
    terms = plan_terms(session, program.id, affiliate.id)
    earning = Earning(
        kind=conversion.type,
        amount_cents=conversion.amount_cents,
        first_sale=_first_sale(session, conversion),
        months_since_first=_months_since_first(session, conversion),
        member_referral=conversion.type == ConversionType.SIGNUP and conversion.customer_user_id is not None,
    )
    recruiter = _recruiter(session, affiliate)
    lines = compute(earning, terms, _period_amounts(session, conversion), recruited=recruiter is not None)
    owed: dict[tuple[int, int], list[Line]] = defaultdict(list)
    for line in lines:
        beneficiary = {
            "affiliate": affiliate.id,
            "referrer": affiliate.id,
            "recruiter": recruiter.id if recruiter else None,
            "referee": conversion.customer_user_id,
        }[line.beneficiary]
        if beneficiary is not None:
            owed[(beneficiary, line.tier_level)].append(line)
    created = []
    for (beneficiary, level), parts in owed.items():
        commission = Commission(
            affiliate_id=beneficiary,
            program_id=program.id,
            conversion_id=conversion.id,
            tier_level=level,
            rule="; ".join(part.rule for part in parts)[:255],
            amount_cents=sum(part.amount_cents for part in parts),
            currency=conversion.currency,
            status=CommissionStatus.PENDING,
            available_at=conversion.occurred_at + timedelta(days=program.hold_days),
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(commission)
                session.flush()
        except IntegrityError:
            continue  # accrued by an earlier run
        legs = [
            Leg("commission_expense", commission.amount_cents, commission.currency),
            Leg(f"affiliate_pending:{beneficiary}", -commission.amount_cents, commission.currency, beneficiary),
        ]
        post(session, "accrual", f"commission:{commission.id}", legs, now=now,
             memo=f"conversion {conversion.id}: {commission.rule}")  # fmt: skip
        created.append(commission)
    return created


def conversions_to_accrue(session: Session, limit: int = 500) -> list[Conversion]:
    """Attributed, earning conversions that have no commission yet, oldest first."""
    has_commission = exists().where(Commission.conversion_id == Conversion.id)
    return session.scalars(
        select(Conversion)
        .where(Conversion.affiliate_id.is_not(None), Conversion.type != ConversionType.REFUND,
               Conversion.status.in_(EARNING_STATUSES), ~has_commission)
        .order_by(Conversion.id)
        .limit(limit)
    ).all()  # fmt: skip


def _recruiter(session: Session, affiliate: User) -> User | None:
    """The active affiliate who recruited this one, who earns the second tier."""
    if affiliate.referred_by_id is None:
        return None
    recruiter = session.get(User, affiliate.referred_by_id)
    if recruiter is None or recruiter.role != Role.AFFILIATE or recruiter.status != UserStatus.ACTIVE:
        return None
    return recruiter


def _period_amounts(session: Session, conversion: Conversion) -> list[int]:
    """Amounts of the affiliate's earlier earning conversions in the calendar month of this one."""
    start = conversion.occurred_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = session.scalars(
        select(Conversion.amount_cents)
        .join(Commission, and_(Commission.conversion_id == Conversion.id, Commission.tier_level == 1,
                               Commission.affiliate_id == conversion.affiliate_id))
        .where(Conversion.program_id == conversion.program_id, Conversion.occurred_at >= start,
               Conversion.id != conversion.id, Commission.status.in_(LIVE_COMMISSIONS))
        .order_by(Conversion.occurred_at, Conversion.id)
    ).all()  # fmt: skip
    return list(rows)


def _customer(conversion: Conversion):
    if conversion.customer_external_id:
        return Conversion.customer_external_id == conversion.customer_external_id
    if conversion.customer_user_id:
        return Conversion.customer_user_id == conversion.customer_user_id
    return None


def _first_sale_at(session: Session, conversion: Conversion) -> datetime | None:
    customer = _customer(conversion)
    if customer is None:
        return None
    return session.scalar(
        select(func.min(Conversion.occurred_at)).where(
            Conversion.program_id == conversion.program_id, Conversion.type == ConversionType.SALE, customer
        )
    )


def _first_sale(session: Session, conversion: Conversion) -> bool:
    first = _first_sale_at(session, conversion)
    return first is None or first >= conversion.occurred_at


def _months_since_first(session: Session, conversion: Conversion) -> int:
    first = _first_sale_at(session, conversion)
    if first is None or first >= conversion.occurred_at:
        return 0
    months = (conversion.occurred_at.year - first.year) * 12 + conversion.occurred_at.month - first.month
    return months - (conversion.occurred_at.day < first.day)
