"""Turn conversions into commissions with their ledger entries; reverse refunds; approve and take back.

The rules are docs/money.md's; the arithmetic is ``services.commissions``; the plan version in force and
the period's counted conversions are ``services.standing``; the invariants ``flask ledger-check`` proves
are ``services.money_checks``. This module loads the rest of what the rules read (the customer's first
sale, what was refunded), locks what it reads to decide (on PostgreSQL; SQLite's single writer already
does), and writes. Why one module: evaluation, reversal, approval and take-back share the
locks, the ledger legs and the refunded share, and read as one commission's life from top to bottom.

Each signup or sale is evaluated once (``conversions.evaluated_at``), even when it earns nothing; each
refund is reversed once (its own ``evaluated_at``). A plan's performance bonus is a commission of the
sale that crosses its threshold, held, approved, refunded and taken back with that sale like the
others, at most one live per affiliate, program and month. Ledger accounts: an accrual debits
``commission_expense`` and credits ``affiliate_pending:<id>``; approval moves it to
``affiliate_payable:<id>``; a reversal takes it back to ``commission_expense``. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from affiliate import notifications
from affiliate.models import (
    Commission,
    CommissionKind,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    EnrollmentStatus,
    LedgerEntry,
    LedgerTransaction,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.money import format_amount
from affiliate.services import audit, postbacks, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.services.commissions import (
    WHOLE_PERIOD,
    Counted,
    PaidConversion,
    evaluate,
    period_of,
    recurring_earns,
    reversal_share,
)
from affiliate.services.enrollment import enrollment_status
from affiliate.services.ledger import Leg, payable_turn, post
from affiliate.services.standing import EVALUABLE, counted_in_period, plan_in_force, plan_label, terms_of

LIVE_COMMISSIONS = (CommissionStatus.PENDING, CommissionStatus.APPROVED, CommissionStatus.PAID)
BATCH = 500
# How an UPDATE here brings the session's copies of the rows it changed up to date: by the ids the database
# says it changed. SQLAlchemy's default tests the UPDATE's criteria against every object of the model in the
# session, and a batch holds hundreds of them: each update cost as much as the whole batch's objects.
BY_ROWS_CHANGED = "fetch"

# Statements that run for every conversion evaluated, built once with their values bound at execution:
# building a select() and its cache key on every call cost more than running it.
# Every lock here and in the other money services is FOR NO KEY UPDATE on PostgreSQL (key_share=True): the lockers
# still take turns, but a sale or refund that only references the locked affiliate or conversion is written without
# waiting. FOR UPDATE also blocks those inserts' foreign-key checks, and a refund holding its sale's lock would then
# wait for the money job holding the affiliate's lock while the job waited for that sale: a deadlock.
_LOCK = {
    model: select(model.id).where(model.id == bindparam("id")).with_for_update(key_share=True)
    for model in (User, Conversion)
}
_BONUS_PAID = select(Commission.conversion_id).where(
    Commission.affiliate_id == bindparam("affiliate_id"),
    Commission.program_id == bindparam("program_id"),
    Commission.kind == CommissionKind.PERFORMANCE_BONUS,
    Commission.period_start == bindparam("month"),
    Commission.status.in_(LIVE_COMMISSIONS),
)
# By the customer key a sale names: its external id, else its member's user id.
_FIRST_SALE_AT = {
    by: select(func.min(Conversion.occurred_at)).where(
        Conversion.program_id == bindparam("program_id"),
        Conversion.type == ConversionType.SALE,
        Conversion.affiliate_id == bindparam("affiliate_id"),
        Conversion.status != ConversionStatus.REJECTED,
        getattr(Conversion, by) == bindparam("customer"),
        or_(
            Conversion.occurred_at < bindparam("occurred_at"),
            and_(Conversion.occurred_at == bindparam("occurred_at"), Conversion.id < bindparam("id")),
        ),
    )
    for by in ("customer_external_id", "customer_user_id")
}


REVERSED = "clicktrail.reversed_cents"  # session.info: cents reversed by this session, for the money job's tally


@dataclass(frozen=True)
class Tally:
    commissions: int
    conversions: int
    reversed_cents: int


def run(session: Session, *, now: datetime) -> Tally:
    """One pass of the money job in one transaction: evaluate what waits, then reverse new refunds."""
    commissions = conversions = last = 0
    reversed_before = session.info.get(REVERSED, 0)  # evaluating a sale may work some refunds out early
    while batch := conversions_to_evaluate(session, now=now, after=last):
        for conversion in batch:
            commissions += len(evaluate_conversion(session, conversion, now=now))
        conversions, last = conversions + len(batch), batch[-1].id
    for refund in refunds_to_reverse(session):
        reverse_for_refund(session, refund, now=now)
    return Tally(commissions, conversions, session.info.get(REVERSED, 0) - reversed_before)


def conversions_to_evaluate(session: Session, *, now: datetime, limit: int = BATCH, after: int = 0) -> list[Conversion]:
    """Credited signups and sales not yet evaluated and not waiting for review or for their click, oldest first.

    Only those that have happened by ``now``: a sale reported a few minutes ahead (the API allows it, for clocks
    apart) is paid by the plan version in force when it happens, which a version saved "from now" meanwhile is.
    """
    return session.scalars(
        select(Conversion)
        .where(
            Conversion.evaluated_at.is_(None),
            Conversion.occurred_at <= now,
            Conversion.affiliate_id.is_not(None),
            Conversion.waiting_for_click.is_(None),
            Conversion.type != ConversionType.REFUND,
            Conversion.status.in_(EVALUABLE),
            Conversion.id > after,
        )
        .order_by(Conversion.id)
        .limit(limit)
    ).all()


def refunds_to_reverse(session: Session, limit: int = BATCH) -> list[Conversion]:
    """Refunds whose reversal has not been worked out yet, oldest first; a refund of a sale that waits for its
    click waits with it (services/late_clicks.py)."""
    sale = aliased(Conversion)
    sale_waits = exists().where(sale.id == Conversion.refund_of_id, sale.waiting_for_click.is_not(None))
    return session.scalars(
        select(Conversion)
        .where(Conversion.type == ConversionType.REFUND, Conversion.evaluated_at.is_(None), ~sale_waits)
        .order_by(Conversion.id)
        .limit(limit)
    ).all()


def evaluate_conversion(session: Session, conversion: Conversion, *, now: datetime) -> list[Commission]:
    """Work out once what a conversion earns (docs/money.md) and accrue it, telling the program's webhook
    endpoints of each commission; returns the commissions made."""
    if conversion.affiliate_id is None or conversion.type == ConversionType.REFUND:
        return []
    # The affiliate's row first: one evaluation at a time per affiliate, as a period's raises read the
    # commissions of every conversion in it.
    _lock(session, User, conversion.affiliate_id)
    state = session.execute(
        select(Conversion.evaluated_at, Conversion.status, Conversion.waiting_for_click)
        .where(Conversion.id == conversion.id)
        .with_for_update(key_share=True)
    ).one()
    if state.evaluated_at is not None or state.status not in EVALUABLE or state.waiting_for_click is not None:
        return []
    plan = plan_in_force(session, conversion.program_id, conversion.affiliate_id, conversion.occurred_at)
    terms = terms_of(plan)
    earns = conversion.type != ConversionType.SALE or recurring_earns(
        terms, conversion.occurred_at, _first_sale_at(session, conversion)
    )
    session.execute(
        update(Conversion)
        .where(Conversion.id == conversion.id)
        .values(evaluated_at=now, counts_for_tiers=earns)
        .execution_options(synchronize_session=BY_ROWS_CHANGED)
    )
    if plan is None or not earns:
        return []
    affiliate = session.get(User, conversion.affiliate_id)
    program = session.get(Program, conversion.program_id)
    recruiter = _recruiter(session, affiliate, program)
    period = _counted(session, conversion, lock=bool(terms.tiers) and terms.tier_scope == WHOLE_PERIOD)
    paid = PaidConversion(
        kind=conversion.type,
        amount_cents=conversion.amount_cents,
        member_referral=_refers_a_friend(session, conversion),
    )
    month = period_of(conversion.occurred_at)[0]
    lines = evaluate(
        paid,
        terms,
        period,
        recruited=recruiter is not None,
        bonus_paid=_bonus_paid(session, conversion, month, now=now),
        money=lambda cents: format_amount(cents, conversion.currency),
    )
    beneficiaries = {
        "affiliate": affiliate.id,
        "referrer": affiliate.id,
        "recruiter": recruiter.id if recruiter else None,
        "referee": conversion.customer_user_id,
    }
    paid_by = plan_label(session, plan)
    steps: dict[int, int] = {}
    created = []
    for line in lines:
        beneficiary = beneficiaries[line.beneficiary]
        if beneficiary is None:
            continue
        target = conversion if line.raised_id is None else session.get(Conversion, line.raised_id)
        if line.raised_id is not None and line.raised_id not in steps:
            steps[line.raised_id] = _next_raise_step(session, line.raised_id, affiliate.id)
        learned = conversion.created_at if target is conversion else max(conversion.created_at, target.created_at)
        commission = Commission(
            affiliate_id=beneficiary,
            program_id=program.id,
            conversion_id=target.id,
            tier_level=line.tier_level,
            kind=line.kind,
            step=steps.get(line.raised_id, 0) if line.raised_id is not None else 0,
            rule=f"{line.rule} ({paid_by})"[:255],
            plan_id=plan.id,
            raised_by_id=conversion.id if line.raised_id is not None else None,
            amount_cents=line.amount_cents,
            currency=conversion.currency,
            status=CommissionStatus.PENDING,
            available_at=learned + timedelta(days=program.hold_days),
            period_start=month if line.kind == CommissionKind.PERFORMANCE_BONUS else None,
            created_at=now,
        )
        session.add(commission)
        session.flush()
        post(
            session,
            "accrual",
            f"commission:{commission.id}",
            [
                Leg("commission_expense", commission.amount_cents, commission.currency),
                Leg(f"affiliate_pending:{beneficiary}", -commission.amount_cents, commission.currency, beneficiary),
            ],
            now=now,
            memo=f"conversion {target.id}: {commission.rule}",
        )
        created.append(commission)
        data = payloads.commission(commission, status=CommissionStatus.PENDING)
        webhooks.emit(session, program.id, "commission.created", data, now=now)
        if target.type == ConversionType.SALE:
            _catch_up(session, target, commission, now=now)
    notifications.new_commissions(session, conversion, created, now=now)
    return created


def reverse_for_refund(session: Session, refund: Conversion, *, now: datetime) -> int:
    """Reverse the refunded share of the sale's commissions with new ledger entries, once; the cents reversed.

    Each commission c of a sale S with F refunded in total has had floor(c x F / S) reversed: this
    refund posts the floor after it less the floor before it (refunds in id order). The affiliate's postbacks
    hear ``conversion.reversed`` with what this refund took back of their own commissions.
    """
    _lock(session, Conversion, refund.refund_of_id)
    claimed = session.execute(
        update(Conversion)
        .where(Conversion.id == refund.id, Conversion.evaluated_at.is_(None))
        .values(evaluated_at=now)
        .execution_options(synchronize_session=BY_ROWS_CHANGED)
    ).rowcount
    if not claimed:
        return 0
    sale = session.get(Conversion, refund.refund_of_id)
    before = _refunded(session, sale.id, below=refund.id)
    commissions = session.scalars(
        select(Commission)
        .where(Commission.conversion_id == sale.id)
        .order_by(Commission.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).all()
    total = own = 0
    for commission in commissions:
        share = _reverse_share(session, refund, sale, commission, before, now=now)
        total += share
        if _own(commission, sale):
            own += share
    postbacks.emit(session, sale, "conversion.reversed", now=now, commission_cents=own)
    session.info[REVERSED] = session.info.get(REVERSED, 0) + total
    return total


def approve(session: Session, commission: Commission, *, now: datetime, actor_id: int | None = None) -> bool:
    """Move a pending commission to approved, once, unless its conversion is flagged or rejected; approved by
    a person (``actor_id``), its affiliate is mailed (approvals by rule are mailed once per run, by ``approve_due``).

    The program's webhook endpoints hear ``commission.approved``; the conversion's own commission (its first
    tier's earning) also fires the affiliate's ``conversion.approved`` postbacks, with its amount.
    """
    payable_turn(session, commission.currency, shared=True)
    status = session.scalar(
        select(Conversion.status).where(Conversion.id == commission.conversion_id).with_for_update(key_share=True)
    )
    if status not in EVALUABLE:
        return False
    moves = [(f"affiliate_pending:{commission.affiliate_id}", 1), (f"affiliate_payable:{commission.affiliate_id}", -1)]
    approved = _transition(
        session,
        commission,
        CommissionStatus.PENDING,
        CommissionStatus.APPROVED,
        "approval",
        moves,
        now=now,
        actor_id=actor_id,
    )
    if not approved:
        return False
    data = payloads.commission(commission, status=CommissionStatus.APPROVED)
    webhooks.emit(session, commission.program_id, "commission.approved", data, now=now)
    if commission.kind == CommissionKind.EARNING and commission.tier_level == 1:
        conversion = session.get(Conversion, commission.conversion_id)
        postbacks.emit(session, conversion, "conversion.approved", now=now, commission_cents=commission.amount_cents)
    if actor_id is not None:
        notifications.commissions_approved(session, [commission], now=now, by_hand=True)
    return True


def reject(
    session: Session,
    commission: Commission,
    *,
    now: datetime,
    actor_id: int | None = None,
    note: str | None = None,
    reason: str = "commission_rejected",
) -> bool:
    """Reject a pending commission, once: what refunds left of its accrual is reversed, and the program's webhook
    endpoints hear ``commission.reversed`` with ``reason`` (see webhook_payloads.commission_reversed)."""
    _lock(session, Conversion, commission.conversion_id)
    moves = [(f"affiliate_pending:{commission.affiliate_id}", 1), ("commission_expense", -1)]
    rejected = _transition(
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
    if rejected:
        left = commission.amount_cents - reversed_cents(session, commission.id)
        _tell_taken_back(session, commission, CommissionStatus.REJECTED, reason, left, now=now)
    return rejected


def take_back(
    session: Session, conversion_id: int, *, now: datetime, actor_id: int | None, note: str | None = None
) -> int:
    """Take back every commission of a rejected conversion, whatever its state; returns how many changed.

    A pending one is rejected; an approved or paid one is reversed from the payable balance (below zero
    when it was paid, recovered from later payouts). What refunds already reversed is not reversed again.
    Each is told to the program's webhook endpoints (``commission.reversed``), and the conversion's affiliate's
    postbacks hear ``conversion.reversed`` with what was taken back of their own commissions.
    """
    _lock(session, Conversion, conversion_id)
    conversion = session.get(Conversion, conversion_id, populate_existing=True)
    changed = own = 0
    for commission in session.scalars(
        select(Commission)
        .where(Commission.conversion_id == conversion_id)
        .order_by(Commission.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).all():
        if commission.status not in LIVE_COMMISSIONS:
            continue
        left = commission.amount_cents - reversed_cents(session, commission.id)
        if commission.status == CommissionStatus.PENDING:
            done = reject(session, commission, now=now, actor_id=actor_id, note=note, reason="conversion_rejected")
        else:
            moves = [(f"affiliate_payable:{commission.affiliate_id}", 1), ("commission_expense", -1)]
            done = _transition(
                session,
                commission,
                commission.status,
                CommissionStatus.REVERSED,
                "conversion_rejected",
                moves,
                now=now,
                actor_id=actor_id,
                note=note,
            )
            if done:
                _tell_taken_back(session, commission, CommissionStatus.REVERSED, "conversion_rejected", left, now=now)
        changed += done
        if done and _own(commission, conversion):
            own += left
    postbacks.emit(session, conversion, "conversion.reversed", now=now, commission_cents=own)
    return changed


def approve_due(session: Session, *, now: datetime) -> int:
    """Approve by rule every pending commission whose hold has passed and whose conversion is not held for review;
    each affiliate gets one mail for all of theirs."""
    due = session.scalars(
        select(Commission)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(
            Commission.status == CommissionStatus.PENDING,
            Commission.available_at <= now,
            Conversion.status.in_(EVALUABLE),
        )
        .order_by(Commission.id)
    ).all()
    approved = [commission for commission in due if approve(session, commission, now=now)]
    notifications.commissions_approved(session, approved, now=now, by_hand=False)
    return len(approved)


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


def _reverse_share(
    session: Session, refund: Conversion, sale: Conversion, commission: Commission, before: int, *, now: datetime
) -> int:
    """Post one refund's share of one commission, once; the cents it took back."""
    if commission.status not in LIVE_COMMISSIONS or not sale.amount_cents:
        return 0
    after = before + refund.amount_cents
    share = reversal_share(commission.amount_cents, before, after, sale.amount_cents)
    if share > 0:
        owed = "affiliate_pending" if commission.status == CommissionStatus.PENDING else "affiliate_payable"
        # A paid commission's reversal takes the payable below zero: recovered from the next payout.
        post(
            session,
            "reversal",
            f"refund:{refund.id}:commission:{commission.id}",
            [
                Leg(f"{owed}:{commission.affiliate_id}", share, commission.currency, commission.affiliate_id),
                Leg("commission_expense", -share, commission.currency),
            ],
            now=now,
            memo=f"refund {refund.refund_key or refund.order_id} of sale {sale.order_id}",
        )
    status = CommissionStatus.REVERSED if after >= sale.amount_cents else commission.status
    if status == CommissionStatus.REVERSED:
        session.execute(
            update(Commission)
            .where(Commission.id == commission.id, Commission.status.in_(LIVE_COMMISSIONS))
            .values(status=CommissionStatus.REVERSED)
            .execution_options(synchronize_session=BY_ROWS_CHANGED)
        )
        session.expire(commission, ["status"])
    if share > 0 or status == CommissionStatus.REVERSED:
        data = payloads.commission_reversed(
            commission, status=status, reversed_cents=share, reason="refund", refund=refund
        )
        webhooks.emit(session, commission.program_id, "commission.reversed", data, now=now)
    return share


def _own(commission: Commission, conversion: Conversion) -> bool:
    """Whether a commission is the conversion's affiliate's own (not a recruiter's share or a member's reward)."""
    return commission.affiliate_id == conversion.affiliate_id and commission.tier_level == 1


def _tell_taken_back(
    session: Session, commission: Commission, status: str, reason: str, left: int, *, now: datetime
) -> None:
    """Tell the program's webhook endpoints a commission was taken back: ``left`` is what refunds had not already."""
    data = payloads.commission_reversed(commission, status=status, reversed_cents=max(left, 0), reason=reason)
    webhooks.emit(session, commission.program_id, "commission.reversed", data, now=now)


def _catch_up(session: Session, sale: Conversion, commission: Commission, *, now: datetime) -> None:
    """A commission made after some of its sale was refunded: the refunds already worked out take their share."""
    before = 0
    for refund in session.scalars(
        select(Conversion)
        .where(Conversion.refund_of_id == sale.id, Conversion.evaluated_at.is_not(None))
        .order_by(Conversion.id)
    ):
        _reverse_share(session, refund, sale, commission, before, now=now)
        before += refund.amount_cents


def _counted(session: Session, conversion: Conversion, *, lock: bool) -> list[Counted]:
    """The affiliate's counted conversions of the period, evaluated before this one (docs/money.md)."""
    return counted_in_period(
        session,
        conversion.program_id,
        conversion.affiliate_id,
        conversion.type,
        conversion.occurred_at,
        leaving_out=conversion.id,
        lock=lock,
    )


def _bonus_paid(session: Session, conversion: Conversion, month: datetime, *, now: datetime) -> bool:
    """Whether the affiliate already has a live performance bonus of this program for the month.

    Read under the affiliate's lock that every evaluation takes first, so two sales crossing at once
    cannot both pay it; the partial unique index on commissions refuses a second one all the same.

    The month's volume leaves out a sale refunded in full as soon as the refund is stored, but the money job
    works refunds out after the sales it evaluates: a bonus still live on such a sale is taken back here first
    (its refunds worked out now, in their order), so the sale that really crosses the threshold earns it.
    """
    values = {"affiliate_id": conversion.affiliate_id, "program_id": conversion.program_id, "month": month}
    holder = session.scalar(_BONUS_PAID, values)
    if holder is None:
        return False
    sale = session.get(Conversion, holder)
    if sale.type != ConversionType.SALE or _refunded(session, sale.id) < sale.amount_cents:
        return True
    waiting = select(Conversion).where(Conversion.refund_of_id == sale.id, Conversion.evaluated_at.is_(None))
    for refund in session.scalars(waiting.order_by(Conversion.id)).all():
        reverse_for_refund(session, refund, now=now)
    return session.scalar(_BONUS_PAID, values) is not None


def _first_sale_at(session: Session, conversion: Conversion) -> datetime | None:
    """The customer's earlier sale credited to the same affiliate that is not rejected, if any."""
    if conversion.customer_external_id:
        by, customer = "customer_external_id", conversion.customer_external_id
    elif conversion.customer_user_id:
        by, customer = "customer_user_id", conversion.customer_user_id
    else:
        return None
    return session.scalar(
        _FIRST_SALE_AT[by],
        {
            "program_id": conversion.program_id,
            "affiliate_id": conversion.affiliate_id,
            "customer": customer,
            "occurred_at": conversion.occurred_at,
            "id": conversion.id,
        },
    )


def _next_raise_step(session: Session, conversion_id: int, affiliate_id: int) -> int:
    last = session.scalar(
        select(func.max(Commission.step)).where(
            Commission.conversion_id == conversion_id,
            Commission.affiliate_id == affiliate_id,
            Commission.kind == CommissionKind.RAISE,
        )
    )
    return (last or 0) + 1


def _refunded(session: Session, sale_id: int, *, below: int | None = None) -> int:
    """What was refunded of a sale (by refunds with ids below ``below``, when given)."""
    query = select(func.coalesce(func.sum(Conversion.amount_cents), 0)).where(Conversion.refund_of_id == sale_id)
    if below is not None:
        query = query.where(Conversion.id < below)
    return int(session.scalar(query))  # SUM of BIGINT is NUMERIC on PostgreSQL


def _refers_a_friend(session: Session, conversion: Conversion) -> bool:
    """A member's signup pays refer-a-friend rewards only to the affiliate who referred that member; a
    member who signed up through someone else's link earns them no reward."""
    if conversion.type != ConversionType.SIGNUP or conversion.customer_user_id is None:
        return False
    member = session.get(User, conversion.customer_user_id)
    return member is not None and member.referred_by_id == conversion.affiliate_id


def _recruiter(session: Session, affiliate: User, program: Program) -> User | None:
    """The active affiliate who recruited this one, who earns the second tier (whether or not they promote the
    program themselves), unless removed from the program: then nothing more in it, as by their links and codes."""
    if affiliate.referred_by_id is None or affiliate.role != Role.AFFILIATE:
        return None  # a member refers friends, not partners: whoever referred them earns no second tier of it
    recruiter = session.get(User, affiliate.referred_by_id)
    if recruiter is None or recruiter.role != Role.AFFILIATE or recruiter.status != UserStatus.ACTIVE:
        return None
    if enrollment_status(session, program.id, recruiter.id) == EnrollmentStatus.REMOVED:
        return None  # a recruiter need not promote the program, but one removed from it earns nothing there
    return recruiter


def _lock(session: Session, model, row_id: int | None) -> None:
    """Lock a row until the transaction ends (PostgreSQL); SQLite's writer already holds the database."""
    if row_id is not None:
        session.execute(_LOCK[model], {"id": row_id}).all()


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
        update(Commission)
        .where(Commission.id == commission.id, Commission.status == before)
        .values(status=after)
        .execution_options(synchronize_session=BY_ROWS_CHANGED)
    ).rowcount
    if not changed:
        return False
    # A refund may already have taken part of the commission back: only what is left moves.
    remaining = commission.amount_cents - reversed_cents(session, commission.id)
    if remaining > 0:
        legs = [
            Leg(
                account,
                sign * remaining,
                commission.currency,
                commission.affiliate_id if account.startswith("affiliate_") else None,
            )
            for account, sign in accounts
        ]
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
