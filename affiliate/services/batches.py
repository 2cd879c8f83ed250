"""Reads of payout batches for finance's pages: the list, a batch's payouts and progress, its audit trail and its
exports."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.orm import Session

from affiliate.models import AuditLog, BatchStatus, Payout, PayoutBatch, PayoutExport, PayoutStatus, Program, User
from affiliate.services.listing import ASC, DESC, Sort, ordered

# The sortable columns of the batches list and of one batch's payouts.
BATCH_SORTS = {
    "built": PayoutBatch.created_at,
    "status": PayoutBatch.status,
    "currency": PayoutBatch.currency,
    "total": PayoutBatch.total_cents,
}
NEWEST = Sort("built", DESC)
PAYOUT_SORTS = {
    "payout": Payout.id,
    "affiliate": User.name,
    "method": Payout.method,
    "amount": Payout.amount_cents,
    "status": Payout.status,
    "paid": Payout.paid_at,
}
BY_ID = Sort("payout", ASC)
# Payouts still to settle: a batch with none of these left (and some paid or failed) is settled.
UNSETTLED = (PayoutStatus.PENDING, PayoutStatus.APPROVED, PayoutStatus.HELD)


@dataclass(frozen=True)
class Progress:
    """What happened to a batch: its payouts by outcome and the state people read.

    ``state`` is the stored status while the batch is a draft, approved, exported or cancelled; once every payout
    is settled it is ``paid`` (all paid), ``partly_paid`` (some paid, some failed) or ``failed`` (none paid).
    """

    state: str
    closed: bool
    payouts: int  # in the batch, cancelled ones left out
    paid: int
    failed: int
    held: int
    waiting: int  # approved (or pending in a draft), not yet paid or failed

    @property
    def label(self) -> str:
        return self.state.replace("_", " ")


def progress(status: str, counts: dict[str, int]) -> Progress:
    """The progress of a batch in ``status`` whose payouts are ``counts`` (by payout status)."""
    paid, failed, held = (counts.get(s, 0) for s in (PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.HELD))
    waiting = counts.get(PayoutStatus.APPROVED, 0) + counts.get(PayoutStatus.PENDING, 0)
    payouts = paid + failed + held + waiting
    state = str(status)
    live = status in (BatchStatus.APPROVED, BatchStatus.EXPORTED, BatchStatus.CLOSED)
    # A batch settled before batches were closed by the last payout reads the same as one closed since.
    if live and payouts and not (waiting or held):
        state = "paid" if paid == payouts else "failed" if not paid else "partly_paid"
    return Progress(state, status == BatchStatus.CLOSED, payouts, paid, failed, held, waiting)


def newest_first(*, status: str | None = None, sort: Sort = NEWEST) -> Select:
    """Every batch, newest first unless ``sort`` says otherwise, narrowed to a stored status (a statement, for the
    paginator)."""
    query = select(PayoutBatch)
    if status in set(BatchStatus):
        query = query.where(PayoutBatch.status == status)
    return ordered(query, sort, BATCH_SORTS, PayoutBatch.id)


def progress_of(session: Session, batches: list[PayoutBatch]) -> dict[int, Progress]:
    """Each batch's progress, by id."""
    counts = status_counts(session, [batch.id for batch in batches])
    return {batch.id: progress(batch.status, counts.get(batch.id, {})) for batch in batches}


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


def payouts_of(session: Session, batch_id: int, sort: Sort = BY_ID) -> list[Row]:
    """The batch's payouts in id order (or as ``sort`` says), each with its affiliate's name and email."""
    query = select(Payout, User.name, User.email).join(User, User.id == Payout.affiliate_id)
    return list(session.execute(ordered(query.where(Payout.batch_id == batch_id), sort, PAYOUT_SORTS, Payout.id)).all())


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
