"""Payout batches, maker-checker: built from the ledger, approved by a second person, each payout settled once.

Ledger moves: building a batch reserves each affiliate's payable balance (debit
``affiliate_payable:<id>``, credit ``payout_clearing``); a payout marked paid leaves clearing for
``cash``; a failed payout returns to the affiliate's payable balance. Every state change is a
guarded UPDATE (only from the expected state), so concurrent clicks settle a payout once (C9).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
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
from affiliate.services.ledger import IN_CHUNK, Leg, post, post_new

COOLING_OFF = timedelta(hours=72)
PAYABLE, PAYABLE_END = "affiliate_payable:", "affiliate_payable;"  # every affiliate's payable account, as a range


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
    # Builds of one currency take turns (PostgreSQL: row locks; SQLite: writers are serial anyway), so
    # the second reads the balances the first left and cannot reserve the same money twice.
    session.execute(
        select(Program.id).where(Program.currency == currency, Program.status == ProgramStatus.ACTIVE).with_for_update()
    ).all()
    owed = session.execute(
        select(LedgerEntry.account, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.account >= PAYABLE, LedgerEntry.account < PAYABLE_END, LedgerEntry.currency == currency)
        .group_by(LedgerEntry.account)
    ).all()  # grouped in the index's order, from the index alone
    # Credits are what an affiliate is owed.
    due = {int(account.removeprefix(PAYABLE)): -int(total) for account, total in owed if -int(total) >= minimum}
    held: list[Held] = []
    rows = []
    for affiliate in _users(session, sorted(due)):
        changed = affiliate.payout_details_changed_at
        if not affiliate.has_payout_details:
            held.append(Held(affiliate.id, "no payout details"))
        elif changed is not None and now - changed < cooling_off:
            until = changed + cooling_off
            held.append(Held(affiliate.id, f"payout details changed {changed:%Y-%m-%d %H:%M} UTC: "
                                           f"held until {until:%Y-%m-%d %H:%M} UTC"))  # fmt: skip
        else:
            rows.append({"affiliate_id": affiliate.id, "amount_cents": due[affiliate.id], "currency": currency,
                         "method": affiliate.payout_method, "destination": _destination(affiliate),
                         "status": PayoutStatus.PENDING, "created_at": now})  # fmt: skip
    if not rows:
        return None, held
    batch = PayoutBatch(currency=currency, created_by_id=actor.id, created_at=now,
                        total_cents=sum(row["amount_cents"] for row in rows))  # fmt: skip
    session.add(batch)
    session.flush()
    session.execute(insert(Payout), [{**row, "batch_id": batch.id} for row in rows])
    payout_ids = dict(session.execute(select(Payout.affiliate_id, Payout.id).where(Payout.batch_id == batch.id)).all())
    post_new(session, "payout_reserve", [
        (f"payout:{payout_ids[row['affiliate_id']]}", [
            Leg(f"affiliate_payable:{row['affiliate_id']}", row["amount_cents"], currency, row["affiliate_id"]),
            Leg("payout_clearing", -row["amount_cents"], currency),
        ])
        for row in rows
    ], now=now)  # fmt: skip
    # Each approved commission not yet in a payout joins its affiliate's payout in this batch.
    in_batch = select(Payout.id).where(Payout.batch_id == batch.id, Payout.affiliate_id == Commission.affiliate_id)
    session.execute(
        update(Commission)
        .where(Commission.currency == currency, Commission.status == CommissionStatus.APPROVED,
               Commission.payout_id.is_(None), Commission.affiliate_id.in_(select(Payout.affiliate_id)
                                                                            .where(Payout.batch_id == batch.id)))
        .values(payout_id=in_batch.scalar_subquery())
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    _audit(session, actor.id, "payout_batch.build", "payout_batch", batch.id, None, BatchStatus.DRAFT, now)
    return batch, held


def _users(session: Session, ids: list[int]) -> list[User]:
    users: list[User] = []
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        users.extend(session.scalars(select(User).where(User.id.in_(chunk)).order_by(User.id)))
    return users


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
    session.execute(update(Commission).where(Commission.affiliate_id == payout.affiliate_id,
                                             Commission.payout_id == payout.id,
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
    session.execute(
        update(Commission)
        .where(Commission.affiliate_id == payout.affiliate_id, Commission.payout_id == payout.id)
        .values(payout_id=None)
    )
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
