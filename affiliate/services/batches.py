"""Reads of payout batches for finance's pages: the list, a batch's payouts, its audit trail and its exports."""

from __future__ import annotations

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.orm import Session

from affiliate.models import AuditLog, Payout, PayoutBatch, PayoutExport, Program, User


def newest_first() -> Select:
    """Every batch, newest first (a statement, for the paginator)."""
    return select(PayoutBatch).order_by(PayoutBatch.created_at.desc(), PayoutBatch.id.desc())


def status_counts(session: Session, batch_ids: list[int]) -> dict[int, dict[str, int]]:
    """How many payouts of each batch are in each status."""
    counts: dict[int, dict[str, int]] = {}
    for batch_id, status, count in session.execute(
        select(Payout.batch_id, Payout.status, func.count())
        .where(Payout.batch_id.in_(batch_ids))
        .group_by(Payout.batch_id, Payout.status)
    ):
        counts.setdefault(batch_id, {})[status] = count
    return counts


def payout_count(session: Session, batch_id: int) -> int:
    return session.scalar(select(func.count()).where(Payout.batch_id == batch_id))


def payouts_of(session: Session, batch_id: int) -> list[Row]:
    """The batch's payouts in id order, each with its affiliate's name and email."""
    return list(
        session.execute(
            select(Payout, User.name, User.email)
            .join(User, User.id == Payout.affiliate_id)
            .where(Payout.batch_id == batch_id)
            .order_by(Payout.id)
        ).all()
    )


def trail(session: Session, batch_id: int, payout_ids: list[int]) -> list[Row]:
    """The audit entries about the batch and its payouts, newest first, each with its actor's email."""
    about_batch = (AuditLog.subject_type == "payout_batch") & (AuditLog.subject_id == batch_id)
    about_payouts = (AuditLog.subject_type == "payout") & AuditLog.subject_id.in_(payout_ids)
    return list(
        session.execute(
            select(AuditLog, User.email)
            .outerjoin(User, User.id == AuditLog.actor_id)
            .where(or_(about_batch, about_payouts))
            .order_by(AuditLog.at.desc(), AuditLog.id.desc())
        ).all()
    )


def exports_of(session: Session, batch_id: int) -> list[Row]:
    """The batch's payment files in the order they were made, each with the email of who made it."""
    return list(
        session.execute(
            select(PayoutExport, User.email)
            .outerjoin(User, User.id == PayoutExport.exported_by_id)
            .where(PayoutExport.batch_id == batch_id)
            .order_by(PayoutExport.id)
        ).all()
    )


def currencies(session: Session) -> list[str]:
    """Every program's currency, paused programs' too: what they earned is still owed."""
    return list(session.scalars(select(Program.currency).distinct().order_by(Program.currency)))
