"""Logins: the server-side session each sign-in starts, the device it came from, and ending them.

A login's token lives in the person's cookie; the database keeps only its SHA-256, so a copy of the table signs
nobody in. Ending a login revokes the row, so a session or remember cookie captured before sign-out or a
password change stops working (docs/guarantees.md, *Sessions end when they should*).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from affiliate.models import User, UserSession
from affiliate.services import audit


@dataclass(frozen=True)
class SessionPolicy:
    """How long a login lasts: a plain one, and one the person asked to be remembered."""

    session_lifetime: timedelta
    remember_lifetime: timedelta


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    session: Session,
    user: User,
    *,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
    policy: SessionPolicy,
    now: datetime,
    fingerprint: str | None = None,
    visitor_id: str | None = None,
) -> str:
    """Record a new login and return its token; staff never get a remembered login."""
    remember = remember and not user.is_staff
    token = secrets.token_urlsafe(32)
    lifetime = policy.remember_lifetime if remember else policy.session_lifetime
    session.add(
        UserSession(
            user_id=user.id,
            token_hash=_token_hash(token),
            ip=ip,
            user_agent=(user_agent or "")[:512] or None,
            fingerprint=fingerprint,
            visitor_id=visitor_id,
            remember=remember,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    user.session_token = token
    return token


def load_session(session: Session, token: str, *, now: datetime) -> User | None:
    """Return the user of a live login token, or None if it is unknown, revoked or expired."""
    if not token or len(token) > 128:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = row.user
    user.session_token = token
    return user


def end_session(session: Session, token: str, *, now: datetime) -> None:
    """Revoke one login so its session and remember cookies stop working."""
    session.execute(
        update(UserSession)
        .where(UserSession.token_hash == _token_hash(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def live_sessions(session: Session, user: User, *, now: datetime) -> list[UserSession]:
    """The user's logins that still work (not signed out, not expired), newest first."""
    return list(
        session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None), UserSession.expires_at > now)
            .order_by(UserSession.created_at.desc(), UserSession.id.desc())
        )
    )


def is_current(row: UserSession, token: str | None) -> bool:
    return token is not None and row.token_hash == _token_hash(token)


def end_other_sessions(session: Session, user: User, *, keep: str, now: datetime, session_id: int | None = None) -> int:
    """Sign out the user's logins other than ``keep`` (only ``session_id``, when given); how many ended.

    A session of another person, this one, or one already ended is never touched: 0.
    """
    ended = session.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user.id,
            UserSession.token_hash != _token_hash(keep),
            UserSession.revoked_at.is_(None),
            *([UserSession.id == session_id] if session_id is not None else []),
        )
        .values(revoked_at=now)
    ).rowcount
    if ended:
        audit.record(
            session,
            actor_id=user.id,
            action="user.sessions_ended",
            subject_type="user",
            subject_id=user.id,
            before=None,
            after={"ended": ended, "session_id": session_id},
            now=now,
        )
    return ended


def end_all_sessions(session: Session, user: User, *, now: datetime) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def seen_device(session: Session, user: User, *, fingerprint: str | None, visitor_id: str | None) -> bool | None:
    """Whether an earlier login of the user came from this device (its fingerprint or its visitor cookie).

    None when the account never signed in before: its first device is not "new" to anyone.
    """
    earlier = session.execute(
        select(UserSession.fingerprint, UserSession.visitor_id).where(UserSession.user_id == user.id)
    ).all()
    if not earlier:
        return None
    return any(
        (fingerprint and row.fingerprint == fingerprint) or (visitor_id and row.visitor_id == visitor_id)
        for row in earlier
    )
