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

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import (
    Commission,
    CommissionPlan,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.services import audit
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


def conversions_to_accrue(session: Session, limit: int = 500, after: int = 0) -> list[Conversion]:
    """Attributed, earning conversions that have no commission yet, oldest first (ids above ``after``)."""
    has_commission = exists().where(Commission.conversion_id == Conversion.id)
    return session.scalars(
        select(Conversion)
        .where(Conversion.affiliate_id.is_not(None), Conversion.type != ConversionType.REFUND,
               Conversion.status.in_(EARNING_STATUSES), ~has_commission, Conversion.id > after)
        .order_by(Conversion.id)
        .limit(limit)
    ).all()  # fmt: skip


def refunds_to_reverse(session: Session) -> list[Conversion]:
    """Refunds of sales that earned commissions and whose reversal is not yet in the ledger."""
    reversed_refunds = {
        int(reference.split(":")[1])
        for reference in session.scalars(
            select(LedgerTransaction.reference).where(LedgerTransaction.kind == "reversal")
        )
    }
    earned = exists().where(Commission.conversion_id == Conversion.refund_of_id)
    refunds = session.scalars(
        select(Conversion).where(Conversion.type == ConversionType.REFUND, earned).order_by(Conversion.id)
    ).all()
    return [refund for refund in refunds if refund.id not in reversed_refunds]


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


def approve(session: Session, commission: Commission, *, now: datetime, actor_id: int | None = None) -> bool:
    """Move a pending commission to approved, once (a guarded UPDATE), with its ledger move and audit row."""
    moves = [(f"affiliate_pending:{commission.affiliate_id}", 1), (f"affiliate_payable:{commission.affiliate_id}", -1)]
    return _transition(
        session,
        commission,
        CommissionStatus.PENDING,
        CommissionStatus.APPROVED,
        "approval",
        moves,
        now=now,
        actor_id=actor_id,
    )


def reject(session: Session, commission: Commission, *, now: datetime, actor_id: int | None = None,
           note: str | None = None) -> bool:  # fmt: skip
    """Reject a pending commission, once: the accrual is reversed in the ledger."""
    moves = [(f"affiliate_pending:{commission.affiliate_id}", 1), ("commission_expense", -1)]
    return _transition(
        session,
        commission,
        CommissionStatus.PENDING,
        CommissionStatus.REJECTED,
        "rejection",
        moves,
        now=now,
        actor_id=actor_id,
        note=note,
    )


def approve_due(session: Session, *, now: datetime) -> int:
    """Approve by rule every pending commission whose hold has passed and whose conversion is not held for review."""
    due = session.scalars(
        select(Commission)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Commission.status == CommissionStatus.PENDING, Commission.available_at <= now,
               Conversion.status.in_((ConversionStatus.PENDING, ConversionStatus.APPROVED)))
        .order_by(Commission.id)
    ).all()  # fmt: skip
    return sum(approve(session, commission, now=now) for commission in due)


def reverse_for_refund(session: Session, refund: Conversion, *, now: datetime) -> int:
    """Reverse the refunded share of the sale's commissions with new ledger entries, never an edit.

    Each refund reverses (commission x refunded so far / sale) minus what earlier refunds
    reversed, in integer cents, so refunds that add up to the sale reverse the commission exactly.
    Returns the cents reversed.
    """
    sale = session.get(Conversion, refund.refund_of_id)
    refunded_before = int(session.scalar(
        select(func.coalesce(func.sum(Conversion.amount_cents), 0))
        .where(Conversion.refund_of_id == sale.id, Conversion.id < refund.id)
    ))  # fmt: skip
    refunded_after = refunded_before + refund.amount_cents
    reversed_total = 0
    for commission in session.scalars(select(Commission).where(Commission.conversion_id == sale.id)):
        reference = f"refund:{refund.id}:commission:{commission.id}"
        done = select(LedgerTransaction.id).where(
            LedgerTransaction.kind == "reversal", LedgerTransaction.reference == reference
        )
        if commission.status == CommissionStatus.REJECTED or not sale.amount_cents or session.scalar(done):
            continue  # nothing to take back, or this refund's reversal is already posted
        share = commission.amount_cents * refunded_after // sale.amount_cents
        share -= commission.amount_cents * refunded_before // sale.amount_cents
        if share <= 0:
            continue
        owed = "affiliate_pending" if commission.status == CommissionStatus.PENDING else "affiliate_payable"
        # A paid commission's reversal takes the payable below zero: recovered from the next payout.
        legs = [
            Leg(f"{owed}:{commission.affiliate_id}", share, commission.currency, commission.affiliate_id),
            Leg("commission_expense", -share, commission.currency),
        ]
        posted = post(session, "reversal", reference, legs, now=now,
                      memo=f"refund {refund.order_id} of sale {sale.order_id}")  # fmt: skip
        if posted.created and refunded_after >= sale.amount_cents:
            session.execute(
                update(Commission)
                .where(Commission.id == commission.id, Commission.status.in_(LIVE_COMMISSIONS))
                .values(status=CommissionStatus.REVERSED)
            )
        reversed_total += share
    return reversed_total


def reversed_cents(session: Session, commission_id: int) -> int:
    """How much of a commission refunds have reversed so far."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.kind == "reversal",
            LedgerTransaction.reference.like(f"refund:%:commission:{commission_id}"),
            LedgerEntry.account.like("affiliate_%"),
        )
    )
    return int(total)


def _transition(
    session: Session,
    commission: Commission,
    before: str,
    after: str,
    kind: str,
    accounts: list[tuple[str, int]],
    *,
    now: datetime,
    actor_id: int | None,
    note: str | None = None,
) -> bool:
    changed = session.execute(
        update(Commission).where(Commission.id == commission.id, Commission.status == before).values(status=after)
    ).rowcount
    if not changed:
        return False
    # A refund may already have taken part of a pending commission back: only what is left moves.
    remaining = commission.amount_cents - reversed_cents(session, commission.id)
    if remaining > 0:
        legs = [
            Leg(account, sign * remaining, commission.currency,
                commission.affiliate_id if account.startswith("affiliate_") else None)
            for account, sign in accounts
        ]  # fmt: skip
        post(session, kind, f"commission:{commission.id}", legs, now=now)
    audit.record(
        session,
        actor_id=actor_id,
        action=f"commission.{kind}",
        subject_type="commission",
        subject_id=commission.id,
        before={"status": before},
        after={"status": after},
        now=now,
        note=note,
    )
    session.expire(commission, ["status"])
    return True
