"""Outbound messages to others' servers: merchants' webhook endpoints, affiliates' postbacks, and each delivery."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from affiliate.extensions import db
from affiliate.models.tracking import BigId
from affiliate.models.types import UTCDateTime, utcnow


class WebhookEndpoint(db.Model):
    """A merchant's URL that receives a program's events, signed as Standard Webhooks with its secret.

    Rotating the secret keeps the previous one until ``previous_secret_until``: messages sent meanwhile carry
    both signatures, so the receiver can switch over without losing any.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[str] = mapped_column(Text)  # space-separated event types; "*" for all
    secret: Mapped[str] = mapped_column(String(80))
    previous_secret: Mapped[str | None] = mapped_column(String(80))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Postback(db.Model):
    """A server-to-server call to an affiliate's tracker when a conversion of theirs is recorded, approved or
    reversed: a URL template with macros. ``affiliate_id`` None is a program-wide postback set by an admin."""

    __tablename__ = "postbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    affiliate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    url_template: Mapped[str] = mapped_column(String(2000))
    method: Mapped[str] = mapped_column(String(4), default="GET")
    events: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(db.Model):
    """One message to one endpoint or postback, written in the transaction of its event and sent at least once.

    ``message_id`` is the same on every try (the receiver's idempotency key). A sender claims a delivery by
    moving ``next_attempt_at`` past the time a send may take; one killed mid-send frees it after that.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    webhook_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    postback_id: Mapped[int | None] = mapped_column(ForeignKey("postbacks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(4))
    url: Mapped[str] = mapped_column(String(4000))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending, delivered, dead
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(String(1024))
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When another message's success made it due at once (services/deliveries.py): that happens once at most.
    woken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
