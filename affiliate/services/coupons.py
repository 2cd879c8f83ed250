"""Coupon codes: an affiliate's codes in a program, how they are made, and how a conversion's code is found.

A code is 3 to 40 letters, digits, dashes or underscores, matched without regard to case and unique in its
program. An admin makes one for an affiliate (active at once), an affiliate asks for one (an admin approves
or declines it), or an admin makes one for each member of a group from a pattern. Retiring a code stops it
crediting anyone; its past conversions keep it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.database import take_turns
from affiliate.models import (
    Conversion,
    Coupon,
    CouponStatus,
    GroupMembership,
    Link,
    Program,
    Role,
    StripeEvent,
    User,
    UserStatus,
)
from affiliate.services import audit
from affiliate.services.attribution import Code
from affiliate.services.enrollment import admits, can_promote, enrollment_status

CODE = re.compile(r"[A-Za-z0-9_-]{3,40}")
PROMOTION_CODE = re.compile(r"promo_[A-Za-z0-9]{1,58}")
DISCOUNT_MAX = 200


class CouponError(ValueError):
    """A coupon change that was refused; the message is safe to show."""


@dataclass(frozen=True)
class CouponSettings:
    code: str
    discount_text: str | None = None
    stripe_promotion_code: str | None = None


def fold(code: str) -> str:
    return code.strip().lower()


def checked_code(code: str | None) -> str:
    code = (code or "").strip()
    if not CODE.fullmatch(code):
        raise CouponError("A code is 3 to 40 letters, digits, dashes or underscores.")
    return code


def find(session: Session, program_id: int, code: str | None) -> Coupon | None:
    """The program's coupon with this code, whatever its state; None for a malformed or unknown code."""
    if not code or not CODE.fullmatch(code.strip()):
        return None
    return session.scalar(select(Coupon).where(Coupon.program_id == program_id, Coupon.code_key == fold(code)))


def by_promotion_code(session: Session, program_id: int, promotion_code: str | None) -> Coupon | None:
    if not promotion_code:
        return None
    return session.scalar(
        select(Coupon)
        .where(Coupon.program_id == program_id, Coupon.stripe_promotion_code == promotion_code)
        .order_by(Coupon.status != CouponStatus.ACTIVE, Coupon.id.desc())
        .limit(1)
    )


def coupon_code(session: Session, program_id: int, code: str) -> tuple[Code, Coupon | None]:
    """What attribution needs to know of a coupon the conversion carried (found or not)."""
    coupon = find(session, program_id, code)
    if coupon is None:
        return Code("coupon", code[:40]), None
    return Code(
        "coupon",
        coupon.code,
        coupon.id,
        coupon.affiliate_id,
        None,
        coupon.status == CouponStatus.ACTIVE,
        _may_earn(session, program_id, coupon.affiliate_id),
    ), coupon


def referral_code(session: Session, program_id: int, code: str) -> Code:
    """A referral code is one of the program's link codes, carried by ct.js from ?ref= or ?via= on any page."""
    link = session.scalar(select(Link).where(Link.code == code, Link.program_id == program_id))
    if link is None:
        return Code("referral_code", code[:64])
    return Code(
        "referral_code",
        link.code,
        link.id,
        link.affiliate_id,
        link.id,
        link.active,
        _may_earn(session, program_id, link.affiliate_id),
    )


def _may_earn(session: Session, program_id: int, affiliate_id: int) -> bool:
    """A code earns only for an active affiliate the program still admits: one removed from it since the code was
    made (or never admitted to a program that needs it) earns nothing through it, as through their links."""
    affiliate = session.get(User, affiliate_id)
    if affiliate is None or affiliate.status != UserStatus.ACTIVE:
        return False
    program = session.get(Program, program_id)
    return admits(program.enrollment, enrollment_status(session, program_id, affiliate_id))


def create(
    session: Session,
    program: Program,
    affiliate: User,
    settings: CouponSettings,
    *,
    actor: User,
    now: datetime,
    requested: bool = False,
    group_id: int | None = None,
) -> Coupon:
    """A code for ``affiliate``: active when an admin makes it, waiting for approval when the affiliate asks."""
    code = checked_code(settings.code)
    if affiliate.role != "affiliate" or not can_promote(session, program, affiliate.id):
        raise CouponError("Only an affiliate who promotes this program can have its codes.")
    if find(session, program.id, code) is not None:
        raise CouponError(f"The code {code} is taken in this program (codes ignore case).")
    coupon = Coupon(
        program_id=program.id,
        affiliate_id=affiliate.id,
        code=code,
        code_key=fold(code),
        discount_text=_discount(settings.discount_text),
        stripe_promotion_code=_promotion_free(session, program.id, _promotion(settings.stripe_promotion_code)),
        status=CouponStatus.REQUESTED if requested else CouponStatus.ACTIVE,
        group_id=group_id,
        created_by_id=actor.id,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(coupon)
    except IntegrityError:
        raise CouponError(f"The code {code} is taken in this program (codes ignore case).") from None
    _audit(session, actor, "coupon.requested" if requested else "coupon.created", coupon, None, now)
    return coupon


def update(
    session: Session,
    coupon: Coupon,
    *,
    discount_text: str | None,
    stripe_promotion_code: str | None,
    actor: User,
    now: datetime,
) -> None:
    before = _shown(coupon)
    coupon.discount_text = _discount(discount_text)
    coupon.stripe_promotion_code = _promotion_free(
        session, coupon.program_id, _promotion(stripe_promotion_code), but=coupon.id
    )
    _audit(session, actor, "coupon.changed", coupon, before, now)


def decide(session: Session, coupon: Coupon, approve: bool, *, actor: User, now: datetime) -> None:
    if coupon.status != CouponStatus.REQUESTED:
        raise CouponError("Only a requested code can be approved or declined.")
    if approve and not can_promote(session, session.get(Program, coupon.program_id), coupon.affiliate_id):
        raise CouponError("This affiliate no longer promotes the program: the code can only be declined.")
    before = _shown(coupon)
    coupon.status = CouponStatus.ACTIVE if approve else CouponStatus.DECLINED
    coupon.decided_by_id, coupon.decided_at = actor.id, now
    _audit(session, actor, "coupon.approved" if approve else "coupon.declined", coupon, before, now)


def retire(session: Session, coupon: Coupon, *, actor: User, now: datetime) -> None:
    if coupon.status == CouponStatus.RETIRED:
        return
    before = _shown(coupon)
    coupon.status, coupon.retired_at = CouponStatus.RETIRED, now
    _audit(session, actor, "coupon.retired", coupon, before, now)


def generate_for_group(
    session: Session,
    program: Program,
    group_id: int,
    pattern: str,
    discount_text: str | None,
    *,
    actor: User,
    now: datetime,
) -> tuple[list[Coupon], list[str]]:
    """A code per member of the group from ``pattern`` ({name}: the member's name, letters and digits only);
    members who already have an active code in the program are skipped. Returns (made, skipped: why)."""
    if "{name}" not in pattern:
        raise CouponError("The pattern needs {name}, for instance {name}10.")
    members = session.scalars(
        select(User)
        .join(GroupMembership, GroupMembership.affiliate_id == User.id)
        .where(GroupMembership.program_id == program.id, GroupMembership.group_id == group_id)
        .order_by(User.id)
    ).all()
    made, skipped = [], []
    for member in members:
        has = session.scalar(
            select(Coupon.id).where(
                Coupon.program_id == program.id, Coupon.affiliate_id == member.id, Coupon.status == CouponStatus.ACTIVE
            )
        )
        if has is not None:
            skipped.append(f"{member.name}: has a code already")
            continue
        name = re.sub(r"[^A-Za-z0-9]", "", member.name or "").upper()[:30] or f"A{member.id}"
        try:
            made.append(
                create(
                    session,
                    program,
                    member,
                    CouponSettings(pattern.replace("{name}", name), discount_text),
                    actor=actor,
                    now=now,
                    group_id=group_id,
                )
            )
        except CouponError as error:
            skipped.append(f"{member.name}: {error}")
    return made, skipped


def of_program(session: Session, program_id: int) -> list[Coupon]:
    order = (Coupon.status != CouponStatus.REQUESTED, Coupon.status != CouponStatus.ACTIVE, Coupon.code_key)
    return list(session.scalars(select(Coupon).where(Coupon.program_id == program_id).order_by(*order)))


def of_affiliate(session: Session, affiliate_id: int) -> list[Coupon]:
    return list(
        session.scalars(
            select(Coupon).where(Coupon.affiliate_id == affiliate_id).order_by(Coupon.program_id, Coupon.code_key)
        )
    )


def _discount(text: str | None) -> str | None:
    text = " ".join((text or "").split())
    if len(text) > DISCOUNT_MAX:
        raise CouponError(f"The discount text is at most {DISCOUNT_MAX} characters.")
    return text or None


def _promotion(code: str | None) -> str | None:
    code = (code or "").strip()
    if code and not PROMOTION_CODE.fullmatch(code):
        raise CouponError("A Stripe promotion code id looks like promo_1Q2w3E4r (from the Stripe dashboard).")
    return code or None


def _promotion_free(session: Session, program_id: int, promotion: str | None, *, but: int | None = None) -> str | None:
    """A Stripe promotion code names one affiliate: a checkout using it credits that coupon's affiliate, so a second
    live coupon (active or requested) with the same code is refused rather than left to decide by its age."""
    if promotion is None:
        return None
    # Coupon writes of the program take turns (its row locked, as SQLite's one writer does), so two admins giving
    # one code to two coupons at once cannot both find it free.
    take_turns(session, Program, program_id)
    taken = session.scalar(
        select(Coupon.code).where(
            Coupon.program_id == program_id,
            Coupon.stripe_promotion_code == promotion,
            Coupon.status.in_((CouponStatus.ACTIVE, CouponStatus.REQUESTED)),
            Coupon.id != (but or 0),
        )
    )
    if taken is not None:
        raise CouponError(f"The Stripe promotion code {promotion} is already the coupon {taken}'s in this program.")
    return promotion


def _shown(coupon: Coupon) -> dict:
    return {
        "code": coupon.code,
        "affiliate_id": coupon.affiliate_id,
        "status": coupon.status,
        "discount_text": coupon.discount_text,
        "stripe_promotion_code": coupon.stripe_promotion_code,
    }


def _audit(session: Session, actor: User, action: str, coupon: Coupon, before: dict | None, now: datetime) -> None:
    session.flush()
    audit.record(
        session,
        actor_id=actor.id,
        action=action,
        subject_type="coupon",
        subject_id=coupon.id,
        before=before,
        after=_shown(coupon),
        now=now,
    )


def times_used(session: Session, coupon_ids: list[int]) -> dict[int, int]:
    """How many conversions each coupon was used on (unused ones are absent)."""
    if not coupon_ids:
        return {}
    counts = (
        select(Conversion.coupon_id, func.count())
        .where(Conversion.coupon_id.in_(coupon_ids))
        .group_by(Conversion.coupon_id)
    )
    return dict(session.execute(counts).all())


def promoters(session: Session, program: Program) -> list[User]:
    """The affiliates, by name, who may promote the program: the people a code can be given to."""
    affiliates = session.scalars(select(User).where(User.role == Role.AFFILIATE).order_by(User.name))
    return [affiliate for affiliate in affiliates if can_promote(session, program, affiliate.id)]


def recent_stripe_events(session: Session, program_id: int, limit: int) -> list[StripeEvent]:
    """The latest Stripe events received for a program, newest first."""
    query = select(StripeEvent).where(StripeEvent.program_id == program_id).order_by(StripeEvent.id.desc())
    return list(session.scalars(query.limit(limit)))


def set_stripe_secret(session: Session, program: Program, secret: str | None, *, actor_id: int, now: datetime) -> None:
    """Keep (or, with None, forget) the program's Stripe signing secret; the audit log says that it changed and
    shows its last four characters, never the secret."""
    program.stripe_webhook_secret = secret
    audit.record(
        session,
        actor_id=actor_id,
        subject_type="program",
        subject_id=program.id,
        before=None,
        action="program.stripe_secret_set" if secret else "program.stripe_secret_removed",
        after={"secret": "…" + secret[-4:]} if secret else None,
        now=now,
    )
