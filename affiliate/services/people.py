"""Reads about people that many pages share: their names for a table, an affiliate looked up by id."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from affiliate.models import Role, User


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
