"""Partner groups: named groups of a program's affiliates, each paid by its own plan versions.

Precedence (docs/money.md, "Plans and their versions"): an affiliate's own plan, else their group's,
else the program's, which is the default group's plan. Moving an affiliate between groups changes the
plan for conversions evaluated from then on; commissions already accrued never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from affiliate.models import (
    Enrollment,
    EnrollmentPolicy,
    EnrollmentStatus,
    GroupMembership,
    PartnerGroup,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.services import audit
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

DEFAULT_NAME = "Default"


class GroupError(ValueError):
    """A group operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class GroupSummary:
    id: int | None  # None: the program's default group
    name: str
    members: int


def create_group(session: Session, program_id: int, name: str, *, actor_id: int | None, now: datetime) -> PartnerGroup:
    """Add a named group to a program; names are unique per program, case-insensitively."""
    name = " ".join((name or "").split())
    if unstorable(name):
        raise GroupError(f"A group's name {UNSTORABLE_MESSAGE}.")
    if not 1 <= len(name) <= 80:
        raise GroupError("A group's name has 1 to 80 characters.")
    if name.casefold() == DEFAULT_NAME.casefold():
        raise GroupError("Every program already has a default group; choose another name.")
    # Compared in Python: SQL lower() folds only ASCII, so "Ärzte" and "ärzte" would both pass a SQL check.
    # The program's row is locked first, so two admins adding the same name at once take turns.
    session.execute(select(Program.id).where(Program.id == program_id).with_for_update(key_share=True)).all()
    names = session.scalars(select(PartnerGroup.name).where(PartnerGroup.program_id == program_id)).all()
    if any(existing.casefold() == name.casefold() for existing in names):
        raise GroupError(f"This program already has a group called {name}.")
    group = PartnerGroup(program_id=program_id, name=name, created_by_id=actor_id, created_at=now)
    session.add(group)
    session.flush()
    audit.record(
        session,
        actor_id=actor_id,
        action="group.created",
        subject_type="program",
        subject_id=program_id,
        before=None,
        after={"group_id": group.id, "name": name},
        now=now,
    )
    return group


def groups_of(session: Session, program_id: int) -> list[GroupSummary]:
    """The default group first, then the named groups by name, each with its number of affiliates."""
    counts = dict(
        session.execute(
            select(GroupMembership.group_id, func.count())
            .where(GroupMembership.program_id == program_id)
            .group_by(GroupMembership.group_id)
        ).all()
    )
    named = session.scalars(
        select(PartnerGroup).where(PartnerGroup.program_id == program_id).order_by(PartnerGroup.name)
    ).all()
    return [GroupSummary(None, DEFAULT_NAME, _in_default_group(session, program_id))] + [
        GroupSummary(group.id, group.name, counts.get(group.id, 0)) for group in named
    ]


def _in_default_group(session: Session, program_id: int) -> int:
    """The affiliates the program admits (active, and enrolled where its policy asks it, never removed) who are in
    none of its named groups: those its default terms pay. Pending applicants and other programs' affiliates
    are not its members."""
    policy = session.scalar(select(Program.enrollment).where(Program.id == program_id))
    status = Enrollment.status
    admitted = (
        or_(status.is_(None), status != EnrollmentStatus.REMOVED)
        if policy == EnrollmentPolicy.OPEN
        else status == EnrollmentStatus.ACTIVE
    )
    grouped = select(GroupMembership.affiliate_id).where(GroupMembership.program_id == program_id)
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .outerjoin(Enrollment, (Enrollment.affiliate_id == User.id) & (Enrollment.program_id == program_id))
            .where(User.role == Role.AFFILIATE, User.status == UserStatus.ACTIVE, admitted, User.id.not_in(grouped))
        )
        or 0
    )


def group_of(session: Session, program_id: int, affiliate_id: int) -> int | None:
    return session.scalar(
        select(GroupMembership.group_id).where(
            GroupMembership.program_id == program_id, GroupMembership.affiliate_id == affiliate_id
        )
    )


def move(
    session: Session,
    program_id: int,
    affiliate_ids: list[int],
    group_id: int | None,
    *,
    actor_id: int | None,
    now: datetime,
) -> int:
    """Put affiliates in a group of the program (None: the default group); how many moved. Audited."""
    if group_id is not None:
        group = session.get(PartnerGroup, group_id)
        if group is None or group.program_id != program_id:
            raise GroupError("Choose one of this program's groups.")
    wanted = set(affiliate_ids)
    found = set(session.scalars(select(User.id).where(User.id.in_(wanted), User.role == Role.AFFILIATE)).all())
    if wanted - found:
        raise GroupError("Only affiliates can be put in a group.")
    moved = 0
    for affiliate_id in sorted(found):
        # Two admins moving the same affiliate at once: the second waits and sees the first's move.
        session.execute(select(User.id).where(User.id == affiliate_id).with_for_update(key_share=True)).all()
        before = group_of(session, program_id, affiliate_id)
        if before == group_id:
            continue
        session.execute(
            delete(GroupMembership).where(
                GroupMembership.program_id == program_id, GroupMembership.affiliate_id == affiliate_id
            )
        )
        if group_id is not None:
            session.add(
                GroupMembership(program_id=program_id, affiliate_id=affiliate_id, group_id=group_id, updated_at=now)
            )
        audit.record(
            session,
            actor_id=actor_id,
            action="group.moved",
            subject_type="affiliate",
            subject_id=affiliate_id,
            before={"program_id": program_id, "group_id": before},
            after={"program_id": program_id, "group_id": group_id},
            now=now,
        )
        moved += 1
    session.flush()
    return moved


def group_names(session: Session, program_id: int) -> dict[int, str]:
    """The name of each affiliate's group in a program, by affiliate id (affiliates in no group are absent)."""
    return dict(
        session.execute(
            select(GroupMembership.affiliate_id, PartnerGroup.name)
            .join(PartnerGroup, PartnerGroup.id == GroupMembership.group_id)
            .where(GroupMembership.program_id == program_id)
        ).all()
    )
