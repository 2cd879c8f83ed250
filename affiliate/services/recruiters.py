"""Recruiters: the affiliate who brought another in, and earns the second tier of what the recruit earns.

An affiliate is recruited by applying through ``/apply?ref=CODE``, the recruiter's referral code. Admins
see and may change who recruited whom (audited); a change counts for conversions evaluated after it, as
commissions already accrued never change (docs/money.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from affiliate.models import (
    Commission,
    CommissionKind,
    CommissionStatus,
    Conversion,
    Program,
    Referral,
    Role,
    User,
    UserStatus,
)
from affiliate.services import audit
from affiliate.services.signups import REFERRAL_CODE


class RecruiterError(ValueError):
    """A recruiter that cannot be set; the message says why."""


@dataclass
class Recruit:
    """One affiliate a recruiter brought in, and the second tier their conversions have earned the recruiter."""

    id: int
    name: str
    status: str
    joined_at: datetime
    # currency -> (earned, paid) in minor units: second-tier commissions that stand (pending, approved or
    # paid) at the amount accrued; a partial refund's reversal shows on the recruiter's statement instead.
    earned: dict[str, tuple[int, int]] = field(default_factory=dict)


def find_recruiter(session: Session, code: str | None) -> User | None:
    """The active affiliate a referral code belongs to; None for anything else (members refer friends, not
    partners)."""
    if not code or not REFERRAL_CODE.fullmatch(code):
        return None
    user = session.scalar(select(User).where(User.referral_code == code.upper()))
    if user is None or user.role != Role.AFFILIATE or user.status != UserStatus.ACTIVE:
        return None
    return user


def set_recruiter(session: Session, affiliate: User, code: str, *, actor_id: int, now: datetime) -> User | None:
    """Make the affiliate with referral code ``code`` the recruiter of ``affiliate`` (empty: nobody), audited.

    Returns the new recruiter. A recruiter must be another affiliate, and not one ``affiliate`` recruited:
    a pair recruiting each other would pay each other a share of the same sales.
    """
    code = code.strip().upper()
    recruiter = None
    if code:
        if not REFERRAL_CODE.fullmatch(code):
            raise RecruiterError("Give the recruiter's referral code: 10 letters and digits, as on their page.")
        recruiter = session.scalar(select(User).where(User.referral_code == code))
        if recruiter is None or recruiter.role != Role.AFFILIATE:
            raise RecruiterError("No affiliate has that referral code.")
        if recruiter.id == affiliate.id:
            raise RecruiterError("An affiliate cannot recruit themselves.")
        if recruiter.referred_by_id == affiliate.id:
            raise RecruiterError(f"{recruiter.name} was recruited by {affiliate.name}; they cannot recruit each other.")
    before = affiliate.referred_by_id
    after = recruiter.id if recruiter else None
    if before == after:
        return recruiter
    affiliate.referred_by_id = after
    session.flush()
    audit.record(
        session,
        actor_id=actor_id,
        action="affiliate.recruiter_changed",
        subject_type="user",
        subject_id=affiliate.id,
        before={"recruiter_id": before},
        after={"recruiter_id": after},
        now=now,
    )
    return recruiter


def recruits(session: Session, recruiter_id: int) -> list[Recruit]:
    """The affiliates ``recruiter_id`` recruited, newest first, with the second tier each has earned them."""
    found = {
        row.id: Recruit(row.id, row.name, row.status, row.created_at)
        for row in session.execute(
            select(User.id, User.name, User.status, User.created_at)
            .where(User.referred_by_id == recruiter_id, User.role == Role.AFFILIATE)
            .order_by(User.created_at.desc(), User.id.desc())
        )
    }
    standing = Commission.status.in_((CommissionStatus.PENDING, CommissionStatus.APPROVED, CommissionStatus.PAID))
    paid = case((Commission.status == CommissionStatus.PAID, Commission.amount_cents), else_=0)
    for recruit_id, currency, earned, paid_cents in session.execute(
        select(Conversion.affiliate_id, Commission.currency, func.sum(Commission.amount_cents), func.sum(paid))
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Commission.affiliate_id == recruiter_id, Commission.kind == CommissionKind.SECOND_TIER, standing)
        .group_by(Conversion.affiliate_id, Commission.currency)
    ):
        if recruit_id in found:  # what a recruit since moved to another recruiter earned stays in the earnings page
            found[recruit_id].earned[currency] = (int(earned), int(paid_cents))
    return list(found.values())


def referrals_by(session: Session, referrer_id: int, limit: int | None = None) -> list:
    """The people someone referred, newest first: when, their name, and the program (None for a plain signup)."""
    query = (
        select(Referral.created_at, User.name, Program.name)
        .join(User, User.id == Referral.referred_id)
        .outerjoin(Program, Program.id == Referral.program_id)
        .where(Referral.referrer_id == referrer_id)
        .order_by(Referral.created_at.desc())
    )
    return list(session.execute(query if limit is None else query.limit(limit)).all())


def referral_count(session: Session, referrer_id: int) -> int:
    return session.scalar(select(func.count()).where(Referral.referrer_id == referrer_id))


def recruit_count(session: Session, recruiter_id: int) -> int:
    """How many affiliates this one recruited."""
    return session.scalar(select(func.count()).where(User.referred_by_id == recruiter_id, User.role == Role.AFFILIATE))
