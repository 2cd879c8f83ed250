"""Payout batches, maker-checker: built from the ledger, approved by a second person, each payout settled once.

Ledger moves: building a batch reserves each affiliate's payable balance (debit
``affiliate_payable:<id>``, credit ``payout_clearing``); a payout marked paid leaves clearing for
``cash``; a failed payout returns to the affiliate's payable balance. Every state change is a
guarded UPDATE (only from the expected state), so concurrent clicks settle a payout once (C9).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from affiliate.models import (
    BatchStatus,
    Commission,
    CommissionStatus,
    LedgerEntry,
    Payout,
    PayoutBatch,
    PayoutStatus,
    Program,
    ProgramStatus,
    User,
)
from affiliate.services import audit
from affiliate.services.ledger import Leg, post

COOLING_OFF = timedelta(hours=72)


class PayoutError(ValueError):
    """A payout action that is not allowed; the message says why."""


@dataclass(frozen=True)
class Held:
    affiliate_id: int
    reason: str


def build_batch(
    session: Session, currency: str, *, actor: User, now: datetime, cooling_off: timedelta = COOLING_OFF
) -> tuple[PayoutBatch | None, list[Held]]:
    """A draft batch of every affiliate whose approved balance reaches the minimum; amounts come from the ledger."""
    minimum = session.scalar(
        select(func.min(Program.minimum_payout_cents)).where(
            Program.currency == currency, Program.status == ProgramStatus.ACTIVE
        )
    )
    if minimum is None:
        raise PayoutError(f"No active program pays in {currency}.")
    owed = session.execute(
        select(LedgerEntry.affiliate_id, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.account.like("affiliate_payable:%"), LedgerEntry.currency == currency)
        .group_by(LedgerEntry.affiliate_id)
    ).all()
    held: list[Held] = []
    batch = None
    for affiliate_id, total in sorted(owed):
        amount = -int(total)  # credits are what the affiliate is owed
        if amount < minimum:
            continue
        affiliate = session.get(User, affiliate_id)
        if not affiliate.has_payout_details:
            held.append(Held(affiliate_id, "no payout details"))
            continue
        changed = affiliate.payout_details_changed_at
        if changed is not None and now - changed < cooling_off:
            until = changed + cooling_off
            held.append(Held(affiliate_id, f"payout details changed {changed:%Y-%m-%d %H:%M} UTC: "
                                           f"held until {until:%Y-%m-%d %H:%M} UTC"))  # fmt: skip
            continue
        if batch is None:
            batch = PayoutBatch(currency=currency, created_by_id=actor.id, created_at=now)
            session.add(batch)
            session.flush()
        payout = Payout(
            batch_id=batch.id, affiliate_id=affiliate_id, amount_cents=amount, currency=currency,
            method=affiliate.payout_method, destination=_destination(affiliate), created_at=now,
        )  # fmt: skip
        session.add(payout)
        session.flush()
        post(session, "payout_reserve", f"payout:{payout.id}", [
            Leg(f"affiliate_payable:{affiliate_id}", amount, currency, affiliate_id),
            Leg("payout_clearing", -amount, currency),
        ], now=now)  # fmt: skip
        session.execute(
            update(Commission)
            .where(Commission.affiliate_id == affiliate_id, Commission.currency == currency,
                   Commission.status == CommissionStatus.APPROVED, Commission.payout_id.is_(None))
            .values(payout_id=payout.id)
        )  # fmt: skip
        batch.total_cents += amount
    if batch is not None:
        _audit(session, actor.id, "payout_batch.build", "payout_batch", batch.id, None, BatchStatus.DRAFT, now)
    return batch, held


def approve_batch(session: Session, batch: PayoutBatch, *, approver: User, now: datetime) -> None:
    """The second person approves a draft batch; its creator cannot (C19)."""
    if approver.id == batch.created_by_id:
        raise PayoutError("The person who built a batch cannot approve it; a second finance user must.")
    changed = session.execute(
        update(PayoutBatch).where(PayoutBatch.id == batch.id, PayoutBatch.status == BatchStatus.DRAFT)
        .values(status=BatchStatus.APPROVED, approved_by_id=approver.id, approved_at=now)
    ).rowcount  # fmt: skip
    if not changed:
        raise PayoutError("Only a draft batch can be approved.")
    session.execute(update(Payout).where(Payout.batch_id == batch.id, Payout.status == PayoutStatus.PENDING)
                    .values(status=PayoutStatus.APPROVED))  # fmt: skip
    _audit(session, approver.id, "payout_batch.approve", "payout_batch", batch.id, BatchStatus.DRAFT,
           BatchStatus.APPROVED, now)  # fmt: skip
    session.expire(batch)


def mark_paid(session: Session, payout: Payout, *, reference: str, actor: User, now: datetime) -> bool:
    """Settle an approved payout once; False when it was not (any longer) approved."""
    changed = session.execute(
        update(Payout).where(Payout.id == payout.id, Payout.status == PayoutStatus.APPROVED)
        .values(status=PayoutStatus.PAID, external_reference=reference[:255], paid_at=now)
    ).rowcount  # fmt: skip
    if not changed:
        return False
    post(session, "payout_paid", f"payout:{payout.id}", [
        Leg("payout_clearing", payout.amount_cents, payout.currency),
        Leg("cash", -payout.amount_cents, payout.currency),
    ], now=now)  # fmt: skip
    session.execute(update(Commission).where(Commission.payout_id == payout.id,
                                             Commission.status == CommissionStatus.APPROVED)
                    .values(status=CommissionStatus.PAID))  # fmt: skip
    _audit(session, actor.id, "payout.paid", "payout", payout.id, PayoutStatus.APPROVED, PayoutStatus.PAID, now)
    session.expire(payout)
    return True


def mark_failed(session: Session, payout: Payout, *, reason: str, actor: User, now: datetime) -> bool:
    """An approved payout that could not be made: its amount returns to the affiliate's balance."""
    changed = session.execute(
        update(Payout).where(Payout.id == payout.id, Payout.status == PayoutStatus.APPROVED)
        .values(status=PayoutStatus.FAILED, failure_reason=reason[:1000])
    ).rowcount  # fmt: skip
    if not changed:
        return False
    post(session, "payout_failed", f"payout:{payout.id}", [
        Leg("payout_clearing", payout.amount_cents, payout.currency),
        Leg(f"affiliate_payable:{payout.affiliate_id}", -payout.amount_cents, payout.currency, payout.affiliate_id),
    ], now=now)  # fmt: skip
    session.execute(update(Commission).where(Commission.payout_id == payout.id).values(payout_id=None))
    _audit(session, actor.id, "payout.failed", "payout", payout.id, PayoutStatus.APPROVED, PayoutStatus.FAILED, now,
           note=reason)  # fmt: skip
    session.expire(payout)
    return True


def _destination(affiliate: User) -> str:
    if affiliate.payout_iban:
        return f"{affiliate.payout_account_name} {affiliate.payout_iban}"
    return affiliate.payout_email or ""


def _audit(session, actor_id, action, subject_type, subject_id, before, after, now, note=None) -> None:
    audit.record(session, actor_id=actor_id, action=action, subject_type=subject_type, subject_id=subject_id,
                 before=None if before is None else {"status": str(before)}, after={"status": str(after)}, now=now,
                 note=note)  # fmt: skip
