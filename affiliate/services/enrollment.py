"""Enrollment: which programs an affiliate may promote, applications, decisions, removals and invitations.

A program is open (every approved affiliate may promote it), by application (an admin approves each
affiliate) or private (invitation only). Whatever the policy, an affiliate an admin removed from a
program cannot create links for it again until re-enrolled. Invitations are signed links that expire
and put the affiliate in a chosen partner group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from affiliate import mail, notifications
from affiliate.database import take_turns
from affiliate.models import (
    Coupon,
    Enrollment,
    EnrollmentPolicy,
    EnrollmentStatus,
    Link,
    PartnerGroup,
    Program,
    ProgramStatus,
    Role,
    User,
)
from affiliate.services import audit, groups, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

INVITE_SALT = "clicktrail.program-invitation"
MAX_INVITE_DAYS = 90


class EnrollmentError(ValueError):
    """An enrollment step that cannot be taken; the message says why."""


@dataclass(frozen=True)
class Standing:
    """Where an affiliate stands with a program, as their home page shows it."""

    program: Program
    status: str | None  # an EnrollmentStatus, or None when they have never applied or been enrolled
    can_promote: bool
    can_apply: bool
    reason: str | None


def enrollment_of(session: Session, program_id: int, affiliate_id: int, *, lock: bool = False) -> Enrollment | None:
    """The affiliate's enrollment row in the program. With ``lock``, enrollment changes of the program take turns
    first (its row locked FOR NO KEY UPDATE, which sales naming it do not wait for): a row that does not exist yet
    cannot be locked, and two requests at once (a double click on Join or Apply) would both insert it."""
    if lock:
        take_turns(session, Program, program_id)
    query = select(Enrollment).where(Enrollment.program_id == program_id, Enrollment.affiliate_id == affiliate_id)
    return session.scalar(query.with_for_update() if lock else query)


def admits(policy: str, status: str | None) -> bool:
    """Whether a program with this enrollment policy lets an affiliate with this enrollment status (None: no row)
    promote it and earn from it. Open programs need no enrollment row; only a removal stops an affiliate there."""
    return status != EnrollmentStatus.REMOVED if policy == EnrollmentPolicy.OPEN else status == EnrollmentStatus.ACTIVE


def enrollment_status(session: Session, program_id: int, affiliate_id: int) -> str | None:
    return session.scalar(
        select(Enrollment.status).where(Enrollment.program_id == program_id, Enrollment.affiliate_id == affiliate_id)
    )


def standing(program: Program, enrollment: Enrollment | None) -> Standing:
    status = enrollment.status if enrollment else None
    promote = admits(program.enrollment, status)
    can_apply = program.enrollment == EnrollmentPolicy.APPLICATION and status is None
    turned_down = status in (EnrollmentStatus.REJECTED, EnrollmentStatus.REMOVED)
    reason = enrollment.reason if enrollment is not None and turned_down else None
    return Standing(program, status, promote and program.status == ProgramStatus.ACTIVE, can_apply, reason)


def standings(session: Session, affiliate_id: int) -> list[Standing]:
    """The programs an affiliate can see: open and by-application ones, and private ones they belong to."""
    programs = session.scalars(
        select(Program).where(Program.status == ProgramStatus.ACTIVE).order_by(Program.name)
    ).all()
    mine = {
        row.program_id: row
        for row in session.scalars(select(Enrollment).where(Enrollment.affiliate_id == affiliate_id))
    }
    seen = []
    for program in programs:
        entry = standing(program, mine.get(program.id))
        if program.enrollment == EnrollmentPolicy.PRIVATE and entry.status != EnrollmentStatus.ACTIVE:
            continue
        seen.append(entry)
    return seen


def can_promote(session: Session, program: Program, affiliate_id: int) -> bool:
    return standing(program, enrollment_of(session, program.id, affiliate_id)).can_promote


def apply(session: Session, program: Program, affiliate: User, *, now: datetime) -> Enrollment:
    """An affiliate asks to join a program that takes applications; open programs need no application."""
    if program.enrollment != EnrollmentPolicy.APPLICATION or program.status != ProgramStatus.ACTIVE:
        raise EnrollmentError("This program does not take applications.")
    if not affiliate.can_use_partner_pages:
        raise EnrollmentError("Only approved affiliates can apply to programs.")
    if enrollment_of(session, program.id, affiliate.id, lock=True) is not None:
        raise EnrollmentError("You have already applied to this program.")
    enrollment = Enrollment(
        program_id=program.id, affiliate_id=affiliate.id, status=EnrollmentStatus.PENDING, created_at=now
    )
    session.add(enrollment)
    session.flush()
    audit.record(
        session,
        actor_id=affiliate.id,
        action="enrollment.applied",
        subject_type="program",
        subject_id=program.id,
        before=None,
        after={"affiliate_id": affiliate.id},
        now=now,
    )
    return enrollment


def decide(
    session: Session,
    program: Program,
    affiliate_id: int,
    decision: str,
    *,
    actor_id: int,
    reason: str | None,
    now: datetime,
) -> Enrollment:
    """Approve or reject an application, remove an enrolled affiliate, or re-enroll one (audited); an affiliate
    admitted is mailed, and the program's webhook endpoints told."""
    moves = {
        "approve": (
            (EnrollmentStatus.PENDING, EnrollmentStatus.REJECTED, EnrollmentStatus.REMOVED),
            EnrollmentStatus.ACTIVE,
        ),
        "reject": ((EnrollmentStatus.PENDING,), EnrollmentStatus.REJECTED),
        "remove": ((EnrollmentStatus.ACTIVE, None), EnrollmentStatus.REMOVED),
    }
    if decision not in moves:
        raise EnrollmentError("Choose approve, reject or remove.")
    if unstorable(reason or ""):
        raise EnrollmentError(f"The reason {UNSTORABLE_MESSAGE}.")
    if decision in ("reject", "remove") and not (reason or "").strip():
        raise EnrollmentError("Say why: the affiliate sees the reason.")
    allowed, target = moves[decision]
    affiliate = session.get(User, affiliate_id)
    if affiliate is None or affiliate.role != "affiliate":
        raise EnrollmentError("Choose an affiliate.")
    enrollment = enrollment_of(session, program.id, affiliate_id, lock=True)
    before = enrollment.status if enrollment else None
    open_member = before is None and program.enrollment == EnrollmentPolicy.OPEN
    if before not in allowed or (before is None and not open_member):
        done = {"approve": "approved", "reject": "rejected", "remove": "removed"}[decision]
        raise EnrollmentError(f"This affiliate's enrollment is {before or 'not started'}; it cannot be {done}.")
    if enrollment is None:
        enrollment = Enrollment(program_id=program.id, affiliate_id=affiliate_id, created_at=now, status=target)
        session.add(enrollment)
    enrollment.status = target
    kept_reason = (reason or "").strip()[:1000] or None
    enrollment.reason = None if target == EnrollmentStatus.ACTIVE else kept_reason
    enrollment.decided_at, enrollment.decided_by_id = now, actor_id
    session.flush()
    audit.record(
        session,
        actor_id=actor_id,
        action=f"enrollment.{decision}",
        subject_type="affiliate",
        subject_id=affiliate_id,
        before={"program_id": program.id, "status": before},
        after={"program_id": program.id, "status": target.value},
        now=now,
        note=reason or None,
    )
    if target == EnrollmentStatus.ACTIVE:
        _tell_enrolled(session, affiliate, program, enrollment, None, now=now)
    return enrollment


def invitation(secret_key: str, program: Program, group_id: int | None) -> str:
    """A signed invitation token for a program (and a partner group); its age is checked when redeemed."""
    return URLSafeTimedSerializer(secret_key, salt=INVITE_SALT).dumps({"p": program.id, "g": group_id})


def redeem(session: Session, secret_key: str, token: str, affiliate: User, *, max_age_days: int, now: datetime):
    """Enroll the signed-in affiliate through an invitation (mailed and told to the program's webhook endpoints,
    unless they were enrolled already); returns (program, group name or None)."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=INVITE_SALT).loads(token, max_age=max_age_days * 86_400)
    except SignatureExpired:
        raise EnrollmentError("This invitation has expired. Ask the program for a new one.") from None
    except BadSignature:
        raise EnrollmentError("This invitation link is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), int):
        raise EnrollmentError("This invitation link is not valid.")
    program = session.get(Program, data["p"])
    if program is None or program.status != ProgramStatus.ACTIVE:
        raise EnrollmentError("This program is not taking affiliates now.")
    if not affiliate.can_use_partner_pages:
        raise EnrollmentError("Only approved affiliates can join programs.")
    group_id = data.get("g")
    group = session.get(PartnerGroup, group_id) if isinstance(group_id, int) else None
    if group is not None and group.program_id != program.id:
        group = None
    enrollment = enrollment_of(session, program.id, affiliate.id, lock=True)
    before = enrollment.status if enrollment else None
    if before == EnrollmentStatus.REMOVED:
        raise EnrollmentError("You were removed from this program; an admin can re-enroll you.")
    if before == EnrollmentStatus.REJECTED:
        # An invitation link can be passed on: it does not overturn an admin's refusal of this affiliate.
        raise EnrollmentError("Your application to this program was not accepted; an admin can enroll you.")
    if before == EnrollmentStatus.ACTIVE:
        # Already in: opening the link again (or one passed on) changes nothing, nor undoes an admin's group move.
        raise EnrollmentError(f"You are already in {program.name}; this invitation changes nothing for you.")
    if enrollment is None:
        enrollment = Enrollment(program_id=program.id, affiliate_id=affiliate.id, created_at=now, status="active")
        session.add(enrollment)
    enrollment.status, enrollment.reason = EnrollmentStatus.ACTIVE, None
    enrollment.decided_at = now
    if group is not None:
        groups.move(session, program.id, [affiliate.id], group.id, actor_id=affiliate.id, now=now)
    session.flush()
    audit.record(
        session,
        actor_id=affiliate.id,
        action="enrollment.invited",
        subject_type="program",
        subject_id=program.id,
        before={"status": before},
        after={"affiliate_id": affiliate.id, "group_id": group.id if group else None},
        now=now,
    )
    _tell_enrolled(session, affiliate, program, enrollment, group.name if group else None, now=now)
    return program, group.name if group else None


def _tell_enrolled(
    session: Session, affiliate: User, program: Program, enrollment: Enrollment, group: str | None, *, now: datetime
) -> None:
    """Mail an affiliate just enrolled, and tell the program's webhook endpoints."""
    webhooks.emit(session, program.id, "enrollment.approved", payloads.enrollment(enrollment), now=now)
    notifications.send(
        session,
        affiliate,
        "enrolled",
        subject=f"You are enrolled in {notifications.one_line(program.name)}",
        now=now,
        program=program,
        group=group,
        links_url=mail.external_url("partner_links.create", program=program.id),
    )


def enrollments_of(session: Session, program_id: int) -> list:
    """A program's enrollments, each with its affiliate, by status then name."""
    return list(
        session.execute(
            select(Enrollment, User)
            .join(User, User.id == Enrollment.affiliate_id)
            .where(Enrollment.program_id == program_id)
            .order_by(Enrollment.status, User.name)
        ).all()
    )


def keep_promoters(session: Session, program: Program, *, actor_id: int | None, now: datetime) -> int:
    """A program that stops being open keeps the affiliates already promoting it (a link or a coupon in it, and no
    enrollment row: an open program needs none): each is enrolled, audited as kept on. Without this, changing the
    policy would silently stop every promoter's clicks from earning. Returns how many were kept."""
    take_turns(session, Program, program.id)
    enrolled = select(Enrollment.affiliate_id).where(Enrollment.program_id == program.id)
    promoting = (
        select(Link.affiliate_id)
        .where(Link.program_id == program.id)
        .union(select(Coupon.affiliate_id).where(Coupon.program_id == program.id))
        .subquery()
    )
    kept = session.scalars(
        select(User.id)
        .where(User.id.in_(select(promoting.c[0])), User.role == Role.AFFILIATE, User.id.not_in(enrolled))
        .order_by(User.id)
    ).all()
    for affiliate_id in kept:
        session.add(
            Enrollment(
                program_id=program.id,
                affiliate_id=affiliate_id,
                status=EnrollmentStatus.ACTIVE,
                created_at=now,
                decided_at=now,
                decided_by_id=actor_id,
            )
        )
        audit.record(
            session,
            actor_id=actor_id,
            action="enrollment.kept",
            subject_type="affiliate",
            subject_id=affiliate_id,
            before={"program_id": program.id, "status": None},
            after={"program_id": program.id, "status": EnrollmentStatus.ACTIVE.value},
            now=now,
            note="was promoting the program when it stopped being open",
        )
    session.flush()
    return len(kept)
