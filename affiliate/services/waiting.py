"""What waits for staff, counted for their first page: applicants, flagged conversions, commissions, adjustments
and payout batches at each step."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from affiliate.models import (
    Adjustment,
    AdjustmentStatus,
    BatchStatus,
    Commission,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    PayoutBatch,
    Role,
    User,
    UserStatus,
)


@dataclass(frozen=True)
class Waiting:
    applicants: int  # affiliates who applied and wait for a decision
    to_review: int  # conversions a fraud rule flagged
    commissions: int  # pending commissions: approved by rule when their hold ends, or decided by hand
    adjustments: int  # bonuses and clawbacks over the threshold, waiting for a second finance user
    batches: dict[str, int]  # payout batches by stored status: draft (to approve), approved (to export), exported

    @property
    def to_approve(self) -> int:
        return self.batches.get(BatchStatus.DRAFT, 0)

    @property
    def to_export(self) -> int:
        return self.batches.get(BatchStatus.APPROVED, 0)

    @property
    def to_pay(self) -> int:
        return self.batches.get(BatchStatus.EXPORTED, 0)


def waiting(session: Session) -> Waiting:
    """How much of each kind of work waits now."""
    applicants = session.scalar(
        select(func.count()).where(User.role == Role.AFFILIATE, User.status == UserStatus.PENDING)
    )
    to_review = session.scalar(select(func.count()).where(Conversion.status == ConversionStatus.FLAGGED))
    commissions = session.scalar(select(func.count()).where(Commission.status == CommissionStatus.PENDING))
    adjustments = session.scalar(select(func.count()).where(Adjustment.status == AdjustmentStatus.PENDING_APPROVAL))
    open_statuses = (BatchStatus.DRAFT, BatchStatus.APPROVED, BatchStatus.EXPORTED)
    batches = dict(
        session.execute(
            select(PayoutBatch.status, func.count())
            .where(PayoutBatch.status.in_(open_statuses))
            .group_by(PayoutBatch.status)
        ).all()
    )
    return Waiting(applicants, to_review, commissions, adjustments, batches)
