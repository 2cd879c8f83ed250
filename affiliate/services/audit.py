"""The audit log: who changed what, when, from what to what.

A change made through the management API names the admin who issued the key as its actor and the key itself
(``actor_key_id``): the API puts the key's id in ``session.info[API_KEY_INFO]`` for the length of the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from affiliate.models import ApiKey, AuditLog, Payout, User

API_KEY_INFO = "audit_api_key_id"


def record(
    session: Session,
    *,
    actor_id: int | None,
    action: str,
    subject_type: str,
    subject_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
    note: str | None = None,
) -> AuditLog:
    """Add one audit row describing a change; the caller commits it with the change."""
    entry = AuditLog(
        actor_id=actor_id,
        actor_key_id=session.info.get(API_KEY_INFO),
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=json.dumps(before, sort_keys=True, default=str) if before is not None else None,
        after=json.dumps(after, sort_keys=True, default=str) if after is not None else None,
        note=note,
        at=now,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Context:
    """What a page of audit entries shows beside them: actors' emails, API key prefixes, payouts' batches."""

    emails: dict[int, str]
    keys: dict[int, str]
    batches: dict[int, int]


def entries(subjects: tuple[str, ...]) -> Select:
    """Audit entries about any of ``subjects``, newest first (a statement, for the paginator)."""
    query = select(AuditLog).where(AuditLog.subject_type.in_(subjects))
    return query.order_by(AuditLog.at.desc(), AuditLog.id.desc())


def context_of(session: Session, shown: list[AuditLog]) -> Context:
    """The emails of the entries' actors, the prefixes of their API keys and the batch of each payout they name."""
    actors = {entry.actor_id for entry in shown} - {None}
    key_ids = {entry.actor_key_id for entry in shown} - {None}
    payout_ids = {entry.subject_id for entry in shown if entry.subject_type == "payout"}
    return Context(
        emails=dict(session.execute(select(User.id, User.email).where(User.id.in_(actors))).all()),
        keys=dict(session.execute(select(ApiKey.id, ApiKey.prefix).where(ApiKey.id.in_(key_ids))).all()),
        batches=dict(session.execute(select(Payout.id, Payout.batch_id).where(Payout.id.in_(payout_ids))).all()),
    )


def history_of(session: Session, subject_type: str, subject_id: int, limit: int | None = None) -> list:
    """The audit entries about one subject, newest first, each with its actor's email."""
    query = (
        select(AuditLog, User.email)
        .outerjoin(User, User.id == AuditLog.actor_id)
        .where(AuditLog.subject_type == subject_type, AuditLog.subject_id == subject_id)
        .order_by(AuditLog.id.desc())
    )
    return list(session.execute(query if limit is None else query.limit(limit)).all())


def latest(session: Session, limit: int) -> list:
    """The latest audit entries of any kind, newest first, each with its actor's email."""
    query = select(AuditLog, User.email).outerjoin(User, User.id == AuditLog.actor_id).order_by(AuditLog.id.desc())
    return list(session.execute(query.limit(limit)).all())
