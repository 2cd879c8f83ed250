"""Commissions, payouts and the append-only ledger: every cent an affiliate is owed."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.tracking import BigId
from affiliate.models.types import UTCDateTime, utcnow


class CommissionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"
    REVERSED = "reversed"


class CommissionKind(enum.StrEnum):
    EARNING = "earning"  # what the conversion earns its affiliate when it is evaluated
    RAISE = "raise"  # a later top-up of the same conversion when its period reaches a better tier
    SECOND_TIER = "second_tier"  # the recruiter's share of an earning or a raise
    REFERRER_REWARD = "referrer_reward"
    REFEREE_REWARD = "referee_reward"
    PERFORMANCE_BONUS = "performance_bonus"  # the plan's bonus, on the sale that takes the month past its threshold


class BatchStatus(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    EXPORTED = "exported"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    PAID = "paid"
    FAILED = "failed"
    HELD = "held"  # its affiliate is suspended: never approved, exported or paid while so
    CANCELLED = "cancelled"  # its draft batch was cancelled and the amount returned to the affiliate


class AdjustmentKind(enum.StrEnum):
    BONUS = "bonus"  # adds to the affiliate's payable balance
    CLAWBACK = "clawback"  # takes from it, below zero if need be: later payouts recover it


class AdjustmentStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"  # over the approval threshold: waits for a second finance user
    APPROVED = "approved"  # posted to the ledger
    REJECTED = "rejected"


LIVE_BONUS = "kind = 'performance_bonus' AND status IN ('pending', 'approved', 'paid')"


class Commission(db.Model):
    """What one conversion earns one beneficiary: its earning, a raise, a second-tier share or a reward.

    ``step`` numbers a conversion's raises (0 for everything made when it was evaluated), so the
    natural key stays unique and a job that runs twice adds nothing twice.
    """

    __tablename__ = "commissions"
    __table_args__ = (
        UniqueConstraint(
            "conversion_id", "affiliate_id", "tier_level", "kind", "step", name="uq_commissions_conversion_level"
        ),
        Index("ix_commissions_affiliate_status", "affiliate_id", "status"),
        # One live performance bonus per affiliate, program and month, whatever evaluates at once: a bonus
        # taken back (its sale refunded in full or rejected) frees the month for the sale that crosses again.
        Index(
            "uq_commissions_performance_bonus",
            "affiliate_id",
            "program_id",
            "period_start",
            unique=True,
            sqlite_where=text(LIVE_BONUS),
            postgresql_where=text(LIVE_BONUS),
        ),
        CheckConstraint("tier_level IN (1, 2)", name="tier_level"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    conversion_id: Mapped[int] = mapped_column(ForeignKey("conversions.id"))
    tier_level: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(32), default=CommissionKind.EARNING, server_default="earning")
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rule: Mapped[str] = mapped_column(String(255))  # which plan rule produced the amount
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("commission_plans.id"))  # the plan version that paid
    # A raise: the conversion whose evaluation brought the period to the better tier.
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("conversions.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=CommissionStatus.PENDING)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The payout it was paid in. Neither indexed nor declared a foreign key: a batch links a million of these
    # at once, and both cost more than the rest of the link. Found by (affiliate_id, status) instead, and
    # `flask ledger-check` proves every link names a payout of the same affiliate and currency.
    payout_id: Mapped[int | None] = mapped_column(Integer)
    # A performance bonus: the first instant of the month it was earned in; None for every other kind.
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PayoutBatch(db.Model):
    __tablename__ = "payout_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.DRAFT)
    total_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payouts: Mapped[list[Payout]] = relationship(back_populates="batch")


class Payout(db.Model):
    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("batch_id", "affiliate_id", name="uq_payouts_batch_affiliate"),
        Index("ix_payouts_affiliate_status", "affiliate_id", "status"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("payout_batches.id"))
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(255))  # snapshot of the payout details used
    payee_name: Mapped[str] = mapped_column(String(120), default="", server_default="")  # snapshot, as destination
    hold_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PayoutStatus.PENDING)
    external_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    batch: Mapped[PayoutBatch] = relationship(back_populates="payouts")


class PayoutExport(db.Model):
    """One provider file made from a batch: who made it, when, and the SHA-256 of the bytes they downloaded."""

    __tablename__ = "payout_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("payout_batches.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    payout_count: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    repeat: Mapped[bool] = mapped_column(Boolean, default=False)  # a confirmed second file of the same format
    exported_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    exported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Adjustment(db.Model):
    """A one-off bonus or clawback finance gives an affiliate, with the reason they see.

    The amount is positive; the kind says which way it moves the payable balance. Over the approval
    threshold it waits for a second finance user before it is posted (services/adjustments.py).
    """

    __tablename__ = "adjustments"
    __table_args__ = (
        Index("ix_adjustments_status", "status"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint("kind IN ('bonus', 'clawback')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)  # shown to the affiliate
    status: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who posted it: the second finance user, or None when it was within the threshold and posted at once.
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejection_note: Mapped[str | None] = mapped_column(Text)


class LedgerTransaction(db.Model):
    """A balanced group of ledger entries; (kind, reference) makes each posting idempotent."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("kind", "reference", name="uq_ledger_transactions_kind_reference"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(128))
    memo: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    entries: Mapped[list[LedgerEntry]] = relationship(back_populates="transaction")


class LedgerEntry(db.Model):
    """One leg of a transaction: positive amounts are debits, negative are credits."""

    __tablename__ = "ledger_entries"
    # With the amount in the index, a balance (or every affiliate's, by account range) reads no table rows.
    __table_args__ = (Index("ix_ledger_entries_account", "account", "currency", "amount_cents"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(64))  # e.g. "affiliate_payable:42"
    affiliate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")


class AuditLog(db.Model):
    """Who changed what, when, from what to what."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the system
    # Set when the change came through the management API: the key that made it (on behalf of actor_id,
    # the admin who issued the key).
    actor_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    before: Mapped[str | None] = mapped_column(Text)  # JSON
    after: Mapped[str | None] = mapped_column(Text)  # JSON
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
