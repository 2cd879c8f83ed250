"""Claiming due rows of a queue (mail, webhooks, postbacks) so that concurrent senders never take the same one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session


def claim_due_rows(
    session: Session, model: Any, waiting: ColumnElement[bool], *, now: datetime, hold: timedelta, limit: int
) -> list[Any]:
    """Up to ``limit`` waiting rows due by ``now``, oldest first, each one more attempt, hidden for ``hold``.

    On PostgreSQL the rows are locked with SKIP LOCKED, so two senders claiming at once take different rows; on
    SQLite the transaction's write lock does the same. A sender that dies leaves its claims to expire after
    ``hold``, and another sender takes them up then: at least once, never twice at the same time.
    """
    rows = session.scalars(
        select(model)
        .where(waiting, model.next_attempt_at <= now)
        .order_by(model.next_attempt_at, model.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + hold
    return list(rows)


def keep_claim(
    session: Session, model: Any, row_id: int, claimed_until: datetime, *, now: datetime, hold: timedelta
) -> datetime | None:
    """Just before a claimed row is worked on: extend its claim by ``hold`` from ``now`` and return the new end, or
    None when the claim ran out and another sender took the row meanwhile (a round of slow sends can outlast it).

    A row's claim is its ``next_attempt_at``: unchanged since this sender set it, the row is still this sender's.
    """
    renewed = now + hold
    changed = session.execute(
        update(model).where(model.id == row_id, model.next_attempt_at == claimed_until).values(next_attempt_at=renewed)
    ).rowcount
    return renewed if changed else None
