"""One-off bonuses and clawbacks: finance adds them by hand, a second person approves the large ones.

An adjustment names an affiliate, a program (whose currency it is in), a positive amount, its kind and
the reason the affiliate reads. Within the approval threshold it is posted at once; over it, it waits as
``pending_approval`` until a finance user other than its maker approves it (then it is posted) or
rejects it (nothing moves). Either decision is taken once: the row is locked and its state changed by a
guarded UPDATE, so two approvals at the same moment post it once.

Ledger (kind ``adjustment``, reference ``adjustment:<id>``): a bonus debits ``adjustment_expense`` and
credits ``affiliate_payable:<affiliate>``; a clawback the reverse, which may take the payable balance
below zero. Payout batches pay the payable balance, so the next batch pays a bonus and recovers a
clawback, as it recovers refunds' reversals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from affiliate.models import Adjustment, AdjustmentKind, AdjustmentStatus, Program, Role, User
from affiliate.money import MAX_CENTS, minor_digits
from affiliate.services import audit
from affiliate.services.ledger import Leg, post
from affiliate.services.listing import ASC, Sort, ordered
from affiliate.services.plans import currency_now
from affiliate.validators import unstorable

REASON_MAX = 1000
STAFF = (Role.FINANCE, Role.ADMIN)
# The sortable columns of the adjustments waiting for approval.
WAITING_SORTS = {
    "added": Adjustment.created_at,
    "affiliate": User.name,
    "kind": Adjustment.kind,
    "amount": Adjustment.amount_cents,
}
OLDEST = Sort("added", ASC)


class AdjustmentError(ValueError):
    """An adjustment that cannot be made or decided; the message says why."""


@dataclass(frozen=True)
class AdjustmentRequest:
    affiliate_id: int
    program_id: int
    kind: str  # "bonus" | "clawback"
    amount_cents: int  # positive, in the program's currency
    reason: str
    currency: str | None = None  # the currency the amount was entered in: refused if the program's changed meanwhile


def approval_threshold(setting: dict[str, int], currency: str) -> int:
    """The largest amount, in minor units of ``currency``, that posts without a second approver.

    ``setting`` is ADJUSTMENT_APPROVAL_THRESHOLD as config.py reads it: whole major units per currency
    code, with ``*`` for every other currency.
    """
    return setting.get(currency, setting["*"]) * 10 ** minor_digits(currency)


def create(
    session: Session, request: AdjustmentRequest, *, actor: User, thresholds: dict[str, int], now: datetime
) -> Adjustment:
    """Record an adjustment: posted at once within the threshold, else left for a second finance user."""
    if actor.role not in STAFF:
        raise AdjustmentError("Only finance staff add bonuses and clawbacks.")
    if request.kind not in (AdjustmentKind.BONUS, AdjustmentKind.CLAWBACK):
        raise AdjustmentError("Choose a bonus or a clawback.")
    if not 0 < request.amount_cents <= MAX_CENTS:
        raise AdjustmentError("The amount is more than zero and at most 100 billion.")
    reason = (request.reason or "").strip()
    if not reason or len(reason) > REASON_MAX or unstorable(reason):
        raise AdjustmentError(f"Give a reason the affiliate can read, up to {REASON_MAX} characters.")
    # The affiliate's row is locked as payouts lock it, so a batch being built sees this posting whole or not at all.
    affiliate = session.scalar(select(User).where(User.id == request.affiliate_id).with_for_update(key_share=True))
    if affiliate is None or affiliate.role != Role.AFFILIATE:
        raise AdjustmentError("Bonuses and clawbacks are for affiliates.")
    program = session.get(Program, request.program_id)
    if program is None:
        raise AdjustmentError("Choose one of the programs.")
    currency = currency_now(session, program.id)
    if request.currency is not None and request.currency != currency:
        raise AdjustmentError(f"The program's currency changed to {currency} meanwhile: check the amount again.")
    needs_approval = request.amount_cents > approval_threshold(thresholds, currency)
    adjustment = Adjustment(
        affiliate_id=affiliate.id,
        program_id=program.id,
        kind=request.kind,
        amount_cents=request.amount_cents,
        currency=currency,
        reason=reason,
        created_by_id=actor.id,
        created_at=now,
        status=AdjustmentStatus.PENDING_APPROVAL if needs_approval else AdjustmentStatus.APPROVED,
        approved_at=None if needs_approval else now,
    )
    session.add(adjustment)
    session.flush()
    _audit(session, actor.id, "adjustment.create", adjustment, None, adjustment.status, now, note=reason)
    if not needs_approval:
        _post(session, adjustment, now=now)
    return adjustment


def approve(session: Session, adjustment_id: int, *, approver: User, now: datetime) -> Adjustment:
    """A second finance user approves a pending adjustment, which posts it; its maker cannot."""
    adjustment = _locked(session, adjustment_id)
    if approver.role not in STAFF:
        raise AdjustmentError("Only finance staff approve bonuses and clawbacks.")
    if approver.id == adjustment.created_by_id:
        raise AdjustmentError("The person who added an adjustment cannot approve it; a second finance user must.")
    changed = session.execute(
        update(Adjustment)
        .where(Adjustment.id == adjustment.id, Adjustment.status == AdjustmentStatus.PENDING_APPROVAL)
        .values(status=AdjustmentStatus.APPROVED, approved_by_id=approver.id, approved_at=now)
    ).rowcount
    if not changed:
        raise AdjustmentError(f"Adjustment #{adjustment.id} was already {adjustment.status.replace('_', ' ')}.")
    session.expire(adjustment)
    _post(session, adjustment, now=now)
    _audit(
        session,
        approver.id,
        "adjustment.approve",
        adjustment,
        AdjustmentStatus.PENDING_APPROVAL,
        AdjustmentStatus.APPROVED,
        now,
    )
    return adjustment


def reject(session: Session, adjustment_id: int, *, actor: User, note: str, now: datetime) -> Adjustment:
    """Turn down a pending adjustment: nothing is posted. Its maker may withdraw it this way too."""
    note = (note or "").strip()
    if not note or len(note) > REASON_MAX or unstorable(note):
        raise AdjustmentError(f"Say why it is rejected, up to {REASON_MAX} characters.")
    adjustment = _locked(session, adjustment_id)
    if actor.role not in STAFF:
        raise AdjustmentError("Only finance staff reject bonuses and clawbacks.")
    changed = session.execute(
        update(Adjustment)
        .where(Adjustment.id == adjustment.id, Adjustment.status == AdjustmentStatus.PENDING_APPROVAL)
        .values(status=AdjustmentStatus.REJECTED, rejected_by_id=actor.id, rejected_at=now, rejection_note=note)
    ).rowcount
    if not changed:
        raise AdjustmentError(f"Adjustment #{adjustment.id} was already {adjustment.status.replace('_', ' ')}.")
    session.expire(adjustment)
    _audit(
        session,
        actor.id,
        "adjustment.reject",
        adjustment,
        AdjustmentStatus.PENDING_APPROVAL,
        AdjustmentStatus.REJECTED,
        now,
        note=note,
    )
    return adjustment


def waiting(sort: Sort = OLDEST) -> Select:
    """Adjustments waiting for a second approver, oldest first unless ``sort`` says otherwise (a statement, for the
    paginator)."""
    query = (
        select(Adjustment)
        .join(User, User.id == Adjustment.affiliate_id)
        .where(Adjustment.status == AdjustmentStatus.PENDING_APPROVAL)
    )
    return ordered(query, sort, WAITING_SORTS, Adjustment.id)


def recently_decided(session: Session, limit: int) -> list[Adjustment]:
    """The latest approved or rejected adjustments, newest first."""
    return list(
        session.scalars(
            select(Adjustment)
            .where(Adjustment.status != AdjustmentStatus.PENDING_APPROVAL)
            .order_by(Adjustment.id.desc())
            .limit(limit)
        )
    )


def recent_for(session: Session, affiliate_id: int, limit: int) -> list[Adjustment]:
    """An affiliate's latest adjustments, in any status, newest first."""
    return list(
        session.scalars(
            select(Adjustment)
            .where(Adjustment.affiliate_id == affiliate_id)
            .order_by(Adjustment.created_at.desc(), Adjustment.id.desc())
            .limit(limit)
        )
    )


def _locked(session: Session, adjustment_id: int) -> Adjustment:
    """The adjustment, read under its row lock (PostgreSQL) so concurrent decisions take turns."""
    adjustment = session.scalar(
        select(Adjustment)
        .where(Adjustment.id == adjustment_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if adjustment is None:
        raise AdjustmentError("There is no such adjustment.")
    return adjustment


def _post(session: Session, adjustment: Adjustment, *, now: datetime) -> None:
    payable = f"affiliate_payable:{adjustment.affiliate_id}"
    sign = 1 if adjustment.kind == AdjustmentKind.BONUS else -1
    post(
        session,
        "adjustment",
        f"adjustment:{adjustment.id}",
        [
            Leg("adjustment_expense", sign * adjustment.amount_cents, adjustment.currency),
            Leg(payable, -sign * adjustment.amount_cents, adjustment.currency, adjustment.affiliate_id),
        ],
        now=now,
        memo=f"{adjustment.kind}: {adjustment.reason}"[:1000],
    )


def _audit(session, actor_id, action, adjustment: Adjustment, before, after, now, note=None) -> None:
    audit.record(
        session,
        actor_id=actor_id,
        action=action,
        subject_type="adjustment",
        subject_id=adjustment.id,
        before=None if before is None else {"status": str(before)},
        after={
            "status": str(after),
            "kind": adjustment.kind,
            "amount_cents": adjustment.amount_cents,
            "currency": adjustment.currency,
            "affiliate_id": adjustment.affiliate_id,
        },
        now=now,
        note=note,
    )
