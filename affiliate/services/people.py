"""Reads about people that many pages share: names for a table, affiliates found by id, status or search."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from affiliate.models import STAFF_ROLES, Role, SecurityKey, User
from affiliate.params import parse_id
from affiliate.services.listing import DESC, Sort, contains, ordered

# The affiliates table's sortable columns.
AFFILIATE_SORTS = {"name": User.name, "email": User.email, "status": User.status, "applied": User.created_at}
NEWEST = Sort("applied", DESC)


def names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Each person's name by id, for the ids given (None is skipped)."""
    wanted = set(ids) - {None}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(wanted))).all())


def affiliate(session: Session, user_id: int) -> User | None:
    """The affiliate with this id, or None when there is none (or the person is not an affiliate)."""
    person = session.get(User, user_id)
    return person if person is not None and person.role == Role.AFFILIATE else None


def affiliates(*, status: str | None = None, search: str = "", sort: Sort = NEWEST) -> Select:
    """Affiliates (newest first unless ``sort`` says otherwise), narrowed to a status and to those ``search``
    finds (see ``matching``); a statement, for the paginator."""
    query = select(User).where(User.role == Role.AFFILIATE)
    if status:
        query = query.where(User.status == status)
    if search:
        query = query.where(User.id.in_(matching(search)))
    return ordered(query, sort, AFFILIATE_SORTS, User.id)


def matching(search: str) -> Select:
    """The ids of the affiliates whose name, email or referral code contains ``search`` (any case); a number is an
    affiliate's id (links made when the filters asked for an id still work), so it finds that one affiliate, not
    everyone whose email or code happens to contain its digits. A subquery for ``IN``."""
    wanted_id = parse_id(search)
    if wanted_id is not None:
        found = or_(User.id == wanted_id, User.referral_code == search)
    else:
        found = or_(contains(User.name, search), contains(User.email, search), contains(User.referral_code, search))
    return select(User.id).where(User.role == Role.AFFILIATE, found)


def affiliates_by_name() -> Select:
    """Every affiliate by name (a statement, for the paginator)."""
    return select(User).where(User.role == Role.AFFILIATE).order_by(User.name, User.id)


def affiliates_by_status(session: Session) -> dict[str, int]:
    """How many affiliates are in each status."""
    counts = select(User.status, func.count()).where(User.role == Role.AFFILIATE).group_by(User.status)
    return dict(session.execute(counts).all())


def staff(session: Session) -> list:
    """Everyone with a staff role, by role then email, each with whether they have a security key."""
    has_key = exists().where(SecurityKey.user_id == User.id)
    query = (
        select(User, has_key.label("has_key"))
        .where(User.role.in_([role.value for role in STAFF_ROLES]))
        .order_by(User.role, User.email)
    )
    return list(session.execute(query).all())
