"""Programs and the settings merchants give them: plans, API keys, fraud rules."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.types import UTCDateTime, utcnow


class AttributionModel(enum.StrEnum):
    LAST_CLICK = "last_click"
    FIRST_CLICK = "first_click"


class CodePrecedence(enum.StrEnum):
    CLICK = "click"  # another affiliate's qualifying click wins over a coupon
    CODE = "code"  # the coupon wins


class ProgramStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class EnrollmentPolicy(enum.StrEnum):
    """How affiliates join a program."""

    OPEN = "open"  # any approved affiliate may promote it
    APPLICATION = "application"  # an admin approves each affiliate's application
    PRIVATE = "private"  # by invitation only


class EnrollmentStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    REMOVED = "removed"


class Program(db.Model):
    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint("attribution_window_days BETWEEN 1 AND 365", name="window_days"),
        CheckConstraint("cookie_days BETWEEN 1 AND 730", name="cookie_days"),
        CheckConstraint("hold_days BETWEEN 0 AND 365", name="hold_days"),
        CheckConstraint("minimum_payout_cents >= 0", name="minimum_payout"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ProgramStatus.ACTIVE)
    destination_url: Mapped[str] = mapped_column(String(2048))
    # Newline-separated hostnames that deep links may point at; the destination's host is always allowed.
    allowed_hosts: Mapped[str] = mapped_column(Text, default="")
    fallback_url: Mapped[str | None] = mapped_column(String(2048))
    attribution_window_days: Mapped[int] = mapped_column(Integer, default=30)
    cookie_days: Mapped[int] = mapped_column(Integer, default=30)
    attribution_model: Mapped[str] = mapped_column(String(16), default=AttributionModel.LAST_CLICK)
    hold_days: Mapped[int] = mapped_column(Integer, default=30)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    minimum_payout_cents: Mapped[int] = mapped_column(BigInteger, default=5000)
    enrollment: Mapped[str] = mapped_column(String(16), default=EnrollmentPolicy.OPEN, server_default="open")
    # When a coupon (or referral code) and another affiliate's qualifying click both name a conversion.
    code_precedence: Mapped[str] = mapped_column(String(8), default=CodePrecedence.CLICK, server_default="click")
    # Given by Stripe for the program's webhook endpoint; verifies what arrives at /integrations/stripe/<id>.
    stripe_webhook_secret: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    plans: Mapped[list[CommissionPlan]] = relationship(back_populates="program")

    @property
    def allowed_host_list(self) -> list[str]:
        return [host for host in self.allowed_hosts.split() if host]

    def __repr__(self) -> str:
        return f"<Program {self.id} {self.name}>"


class PartnerGroup(db.Model):
    """A named group of a program's affiliates (e.g. "VIP") with its own commission plan.

    Affiliates in no named group are in the program's default group, whose plan is the program's plan
    (``commission_plans.group_id`` NULL), so a program without named groups works as before.
    """

    __tablename__ = "partner_groups"
    __table_args__ = (UniqueConstraint("program_id", "name", name="uq_partner_groups_program_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    program: Mapped[Program] = relationship()


class Enrollment(db.Model):
    """An affiliate's place in one program: applied, enrolled, turned down or removed (with the reason)."""

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("program_id", "affiliate_id", name="uq_enrollments_program_affiliate"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class GroupMembership(db.Model):
    """Which named group of a program an affiliate is in; none means the program's default group."""

    __tablename__ = "group_memberships"
    __table_args__ = (UniqueConstraint("program_id", "affiliate_id", name="uq_group_memberships_program_affiliate"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("partner_groups.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CommissionPlan(db.Model):
    """One version of how a program pays: the default group's (no group, no affiliate), a named group's,
    or one affiliate's own override.

    A change is a new row with a later ``effective_from``; rows are never edited once conversions may
    have been paid by them (docs/money.md, "Plans and their versions").
    """

    __tablename__ = "commission_plans"
    __table_args__ = (
        UniqueConstraint(
            "program_id", "group_id", "affiliate_id", "effective_from", name="uq_commission_plans_program_affiliate"
        ),
        CheckConstraint("flat_cents >= 0", name="flat_cents"),
        CheckConstraint("percent_bps BETWEEN 0 AND 10000", name="percent_bps"),
        CheckConstraint("second_tier_bps BETWEEN 0 AND 10000", name="second_tier_bps"),
        CheckConstraint("bonus_threshold IS NULL OR bonus_threshold >= 1", name="bonus_threshold"),
        CheckConstraint("bonus_cents >= 0", name="bonus_cents"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    affiliate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("partner_groups.id"))
    flat_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    percent_bps: Mapped[int] = mapped_column(Integer, default=0)  # basis points of the sale amount
    tier_basis: Mapped[str] = mapped_column(String(16), default="count")  # count | revenue
    tier_scope: Mapped[str] = mapped_column(String(16), default="whole_period")  # whole_period | marginal
    second_tier_bps: Mapped[int] = mapped_column(Integer, default=0)
    # None = for life. No column default: SQLAlchemy would write a default in place of an explicit None.
    recurring_months: Mapped[int | None] = mapped_column(Integer)
    referrer_reward_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_reward_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # A performance bonus: bonus_cents once a month when the month's sales reach bonus_threshold (a count,
    # or revenue in minor units, as tier_basis says); no threshold, no bonus.
    bonus_threshold: Mapped[int | None] = mapped_column(BigInteger)
    bonus_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    program: Mapped[Program] = relationship(back_populates="plans")
    tiers: Mapped[list[CommissionTier]] = relationship(back_populates="plan", order_by="CommissionTier.threshold")


class CommissionTier(db.Model):
    __tablename__ = "commission_tiers"
    __table_args__ = (
        UniqueConstraint("plan_id", "threshold", name="uq_commission_tiers_plan_threshold"),
        CheckConstraint("threshold >= 0", name="threshold"),
        CheckConstraint("percent_bps BETWEEN 0 AND 10000", name="percent_bps"),
        CheckConstraint("flat_cents >= 0", name="flat_cents"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("commission_plans.id", ondelete="CASCADE"))
    threshold: Mapped[int] = mapped_column(BigInteger)  # conversions, or revenue in cents
    percent_bps: Mapped[int] = mapped_column(Integer, default=0)
    flat_cents: Mapped[int] = mapped_column(BigInteger, default=0)

    plan: Mapped[CommissionPlan] = relationship(back_populates="tiers")


class ApiKey(db.Model):
    """A merchant's key for the conversion API; only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # HMAC signing secrets; two may be active while one is rotated out.
    signing_secret: Mapped[str] = mapped_column(String(128))
    previous_signing_secret: Mapped[str | None] = mapped_column(String(128))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Space-separated scopes (services.api_keys.SCOPES); keys issued before scopes existed hold the two below.
    scopes: Mapped[str] = mapped_column(
        String(255), default="conversions:write refunds:write", server_default="conversions:write refunds:write"
    )

    program: Mapped[Program] = relationship()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class ApiIdempotencyKey(db.Model):
    """The answer a management API request got, kept under its request id so a retry gets the same answer
    and changes nothing twice."""

    __tablename__ = "api_idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "request_id", name="uq_api_idempotency_keys_key_request"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    request_id: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class FraudRule(db.Model):
    """A per-program setting of one fraud rule: off, allow, flag or reject."""

    __tablename__ = "fraud_rules"
    __table_args__ = (
        UniqueConstraint("program_id", "rule", name="uq_fraud_rules_program_rule"),
        CheckConstraint("weight BETWEEN 0 AND 100", name="weight"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    rule: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(8), default="flag")
    weight: Mapped[int] = mapped_column(Integer, default=50)
    settings: Mapped[str] = mapped_column(Text, default="{}")  # JSON thresholds
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
