"""People and their logins."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from affiliate.extensions import db
from affiliate.models.types import UTCDateTime, utcnow


class Role(enum.StrEnum):
    MEMBER = "member"
    AFFILIATE = "affiliate"
    FINANCE = "finance"
    ADMIN = "admin"


class UserStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class PayoutMethod(enum.StrEnum):
    PAYPAL = "paypal"
    WISE = "wise"
    BANK = "bank"


def payout_details_complete(details) -> bool:
    """Whether a user, or a row of a user's payout columns, says where to send money."""
    if details.payout_method in (PayoutMethod.PAYPAL, PayoutMethod.WISE):
        return bool(details.payout_email)
    if details.payout_method == PayoutMethod.BANK:
        return bool(details.payout_account_name and details.payout_iban)
    return False


# Staff roles never get a remember-me cookie: a stolen device must not keep finance signed in.
STAFF_ROLES = frozenset({Role.FINANCE, Role.ADMIN})


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    website: Mapped[str | None] = mapped_column(String(500))
    promotion: Mapped[str | None] = mapped_column(Text)
    payout_method: Mapped[str | None] = mapped_column(String(16))
    payout_email: Mapped[str | None] = mapped_column(String(254))
    payout_account_name: Mapped[str | None] = mapped_column(String(120))
    payout_iban: Mapped[str | None] = mapped_column(String(34))
    payout_details_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Two-factor sign-in: the authenticator app's shared secret (base32) once confirmed, and the last
    # 30-second step a code was accepted for, so a code is never accepted twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    referred_by: Mapped[User | None] = relationship(remote_side=[id])

    # Set by the login machinery: the token of the login session this object was loaded for.
    session_token = None

    def get_id(self) -> str | None:
        """Identify the login session, not the user, so revoking it ends the cookie."""
        return self.session_token

    @property
    def is_active(self) -> bool:
        # Flask-Login refuses inactive users outright; pending and suspended affiliates
        # may still sign in to read why, so every signed-in account counts as active here.
        return True

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def can_use_partner_pages(self) -> bool:
        return self.role == Role.AFFILIATE and self.status == UserStatus.ACTIVE

    @property
    def has_payout_details(self) -> bool:
        return payout_details_complete(self)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}/{self.status}>"


class UserSession(db.Model):
    """One login: revoking the row ends its session and remember cookies."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # The device and the visitor cookie the user signed in with (self-referral evidence).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    visitor_id: Mapped[str | None] = mapped_column(String(32))
    remember: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class Throttle(db.Model):
    """Failures counted against one key (an email at an address, or an address), shared by every worker.

    The key is a keyed digest of what it counts (services/throttles.py), so the table holds no email or address.
    """

    __tablename__ = "throttles"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecoveryCode(db.Model):
    """A single-use code that stands in for the second factor; only its SHA-256 is kept."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SecurityKey(db.Model):
    """A WebAuthn credential (a security key or a platform authenticator) registered as a second factor."""

    __tablename__ = "security_keys"
    __table_args__ = (UniqueConstraint("credential_id", name="uq_security_keys_credential"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1024))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(2048))
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
