"""Signups, sales and refunds reported by merchants, with their attribution."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.accounts import User
from affiliate.models.programs import Program
from affiliate.models.tracking import BigId, Click
from affiliate.models.types import UTCDateTime, utcnow


class ConversionType(enum.StrEnum):
    SIGNUP = "signup"
    SALE = "sale"
    REFUND = "refund"


class ConversionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    FLAGGED = "flagged"
    REJECTED = "rejected"


class Conversion(db.Model):
    __tablename__ = "conversions"
    __table_args__ = (
        # The idempotency key of the API: one signup and one sale per merchant order, and one refund per
        # (refunded order, refund id); a refund without an id is the order's "rest" refund, refund_key "".
        UniqueConstraint("program_id", "order_id", "type", "refund_key", name="uq_conversions_program_order_type"),
        Index("ix_conversions_affiliate_at", "affiliate_id", "occurred_at"),
        # Screening's count of an affiliate's latest conversions in a program reads only this index.
        Index("ix_conversions_affiliate_program_at", "affiliate_id", "program_id", "occurred_at", "type", "click_id"),
        Index("ix_conversions_program_customer", "program_id", "customer_external_id"),
        Index("ix_conversions_coupon_at", "coupon_id", "occurred_at"),
        Index("ix_conversions_customer_ip_at", "customer_ip", "created_at"),
        Index("ix_conversions_customer_device_at", "customer_fingerprint", "created_at"),
        # The ingester looks up, per batch of clicks it stored, the conversions waiting for any of them.
        Index("ix_conversions_waiting_for_click", "waiting_for_click"),
        CheckConstraint("fraud_score BETWEEN 0 AND 100", name="fraud_score"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    type: Mapped[str] = mapped_column(String(8))
    order_id: Mapped[str] = mapped_column(String(128))
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    customer_external_id: Mapped[str | None] = mapped_column(String(128))
    customer_email: Mapped[str | None] = mapped_column(String(254))
    customer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    customer_ip: Mapped[str | None] = mapped_column(String(45))  # where the conversion came from, if known
    customer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    customer_country: Mapped[str | None] = mapped_column(String(2))
    click_id: Mapped[int | None] = mapped_column(ForeignKey("clicks.id"), index=True)
    # The coupon the customer used, when it is one of the program's; whether its affiliate had a qualifying
    # click for this conversion too (coupon codes leaked to coupon sites convert without one).
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    coupon_with_click: Mapped[bool | None] = mapped_column(Boolean)
    affiliate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    refund_of_id: Mapped[int | None] = mapped_column(ForeignKey("conversions.id"), index=True)
    refund_key: Mapped[str] = mapped_column(String(128), default="", server_default="")  # the merchant's refund id
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # same key, other payload -> 409
    decision_trace: Mapped[str | None] = mapped_column(Text)  # JSON
    fraud_score: Mapped[int] = mapped_column(Integer, default=0)
    fraud_reasons: Mapped[str | None] = mapped_column(Text)  # JSON list
    status: Mapped[str] = mapped_column(String(16), default=ConversionStatus.PENDING, index=True)
    extra: Mapped[str | None] = mapped_column(Text)  # merchant metadata, JSON
    # When the money job worked out what this conversion earns (even nothing): it never does so twice.
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Whether, once evaluated, it counts towards its affiliate's tiers (a repeat sale past the plan's
    # recurring months does not).
    counts_for_tiers: Mapped[bool | None] = mapped_column()
    # A conversion naming a click still in a redirector's click log (services/late_clicks.py): the click id it
    # waits for, since when, and the report as received (JSON), attributed again once the click is stored.
    # All three are cleared then; a waiting conversion is credited to nobody and not evaluated.
    waiting_for_click: Mapped[str | None] = mapped_column(String(32))
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waiting_report: Mapped[str | None] = mapped_column(Text)

    program: Mapped[Program] = relationship()
    click: Mapped[Click | None] = relationship()
    affiliate: Mapped[User | None] = relationship(foreign_keys=[affiliate_id])
