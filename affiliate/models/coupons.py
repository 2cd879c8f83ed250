"""Codes that credit an affiliate without a click: coupons typed at checkout, and what Stripe tells us.

A coupon belongs to one affiliate in one program. Its code is matched without regard to case (``code_key``
is the folded form, unique per program); retiring it keeps its history but stops it crediting anyone.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.accounts import User
from affiliate.models.types import UTCDateTime, utcnow


class CouponStatus(enum.StrEnum):
    REQUESTED = "requested"  # an affiliate asked for it; an admin approves or declines
    ACTIVE = "active"
    DECLINED = "declined"
    RETIRED = "retired"


class Coupon(db.Model):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("program_id", "code_key", name="uq_coupons_program_code"),
        Index("ix_coupons_program_promotion", "program_id", "stripe_promotion_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))  # as it was written, for display
    code_key: Mapped[str] = mapped_column(String(40))  # folded: what matching compares
    discount_text: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CouponStatus.ACTIVE)
    # The Stripe promotion code (promo_...) a checkout names when the customer used this code there.
    stripe_promotion_code: Mapped[str | None] = mapped_column(String(64))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("partner_groups.id"))  # made for a group's members
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    affiliate: Mapped[User] = relationship(foreign_keys=[affiliate_id])


class StripeEvent(db.Model):
    """A Stripe event received for a program, once per Stripe event id: what was done with it and why.

    An event that names something not known yet (an invoice before its checkout) waits with its payload
    and is taken up again when the checkout arrives.
    """

    __tablename__ = "stripe_events"
    __table_args__ = (UniqueConstraint("program_id", "event_id", name="uq_stripe_events_program_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    stripe_created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # recorded | waiting | ignored | refused
    detail: Mapped[str | None] = mapped_column(String(500))
    waiting_for: Mapped[str | None] = mapped_column(String(255), index=True)  # the Stripe customer it waits on
    payload: Mapped[str | None] = mapped_column(Text)  # kept only while waiting
    conversion_id: Mapped[int | None] = mapped_column(ForeignKey("conversions.id"))


class StripeCustomer(db.Model):
    """A Stripe customer who came through a referral: how they were attributed, and their subscription."""

    __tablename__ = "stripe_customers"
    __table_args__ = (UniqueConstraint("program_id", "customer_id", name="uq_stripe_customers_program_customer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    customer_id: Mapped[str] = mapped_column(String(255))
    checkout_session_id: Mapped[str] = mapped_column(String(255))
    click_id: Mapped[str | None] = mapped_column(String(32))
    referral_code: Mapped[str | None] = mapped_column(String(64))
    coupon: Mapped[str | None] = mapped_column(String(40))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the subscription was cancelled


class StripePayment(db.Model):
    """Which conversion a Stripe payment became, so a refund of its charge finds the sale."""

    __tablename__ = "stripe_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    order_id: Mapped[str] = mapped_column(String(128))
    payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    charge: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice: Mapped[str | None] = mapped_column(String(255), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
