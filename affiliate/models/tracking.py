"""Links, the clicks on them, and the referrals they lead to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.accounts import User
from affiliate.models.programs import Program
from affiliate.models.types import UTCDateTime, utcnow

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Link(db.Model):
    __tablename__ = "links"
    __table_args__ = (Index("ix_links_affiliate_program", "affiliate_id", "program_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    campaign: Mapped[str | None] = mapped_column(String(120))
    sub1: Mapped[str | None] = mapped_column(String(255))
    sub2: Mapped[str | None] = mapped_column(String(255))
    sub3: Mapped[str | None] = mapped_column(String(255))
    sub4: Mapped[str | None] = mapped_column(String(255))
    sub5: Mapped[str | None] = mapped_column(String(255))
    deep_link: Mapped[str | None] = mapped_column(String(2048))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    affiliate: Mapped[User] = relationship()
    program: Mapped[Program] = relationship()


class Click(db.Model):
    __tablename__ = "clicks"
    __table_args__ = (
        Index("ix_clicks_link_at", "link_id", "clicked_at"),
        # is_bot and fraud_action (what makes a click human), so screening counts human clicks from the index alone.
        Index("ix_clicks_affiliate_at", "affiliate_id", "clicked_at", "is_bot", "fraud_action"),
        # Uniqueness (per link, last hour) and attribution (per program, the window) both start
        # from one visitor or one device, so these serve both.
        Index("ix_clicks_visitor_at", "visitor_id", "clicked_at"),
        Index("ix_clicks_fingerprint_at", "fingerprint", "clicked_at"),
        # The flooding rule's counts: one address's clicks on one link in the last hour.
        Index("ix_clicks_link_ip_at", "link_id", "ip", "clicked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    click_id: Mapped[str] = mapped_column(String(32), unique=True)  # 128 random bits, URL-safe
    # SQLite checks these three keys; PostgreSQL, where clicks arrive by COPY, does not (migration 0023).
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"))
    affiliate_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    clicked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    ip_prefix: Mapped[str | None] = mapped_column(String(45))  # /24 for IPv4, /48 for IPv6
    user_agent: Mapped[str | None] = mapped_column(String(1024))
    device_type: Mapped[str | None] = mapped_column(String(16))
    device_brand: Mapped[str | None] = mapped_column(String(64))
    device_model: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str | None] = mapped_column(String(64))
    browser: Mapped[str | None] = mapped_column(String(64))
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    bot_reason: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(128))
    city: Mapped[str | None] = mapped_column(String(128))
    referrer: Mapped[str | None] = mapped_column(String(2048))
    sub1: Mapped[str | None] = mapped_column(String(255))
    sub2: Mapped[str | None] = mapped_column(String(255))
    sub3: Mapped[str | None] = mapped_column(String(255))
    sub4: Mapped[str | None] = mapped_column(String(255))
    sub5: Mapped[str | None] = mapped_column(String(255))
    sec_fetch: Mapped[str | None] = mapped_column(String(255))  # "site/mode/dest/user" as sent
    paid_click: Mapped[str | None] = mapped_column(String(64))  # ad click id parameters on the click: "gclid,fbclid"
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    visitor_id: Mapped[str | None] = mapped_column(String(32))
    is_unique: Mapped[bool] = mapped_column(Boolean, default=True)
    fraud_score: Mapped[int] = mapped_column(Integer, default=0)
    fraud_action: Mapped[str | None] = mapped_column(String(8))
    fraud_reasons: Mapped[str | None] = mapped_column(Text)  # JSON list


class Referral(db.Model):
    """Who brought whom: one row per referred user (the seed's Referrals table)."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(primary_key=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    referred_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"))
    click_id: Mapped[int | None] = mapped_column(ForeignKey("clicks.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    referrer: Mapped[User] = relationship(foreign_keys=[referrer_id])
    referred: Mapped[User] = relationship(foreign_keys=[referred_id])
