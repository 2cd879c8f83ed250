"""Claiming due rows of a queue (mail, webhooks, postbacks) so that concurrent senders never take the same one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session


def claim_due_rows(
    session: Session, model: Any, waiting: ColumnElement[bool], *, now: datetime, hold: timedelta, limit: int
) -> list[Any]:
    """Up to ``limit`` waiting rows due by ``now``, oldest first, hidden for ``hold``.

    A claim is not a try: ``keep_claim`` counts the try when the sender reaches the row. A round of slow sends can
    outlast its claims, and another sender then takes what this one never reached; counted here, such a row would
    lose a try it never had and die early.

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
        row.next_attempt_at = now + hold
    return list(rows)


def keep_claim(
    session: Session, model: Any, row_id: int, claimed_until: datetime, *, now: datetime, hold: timedelta
) -> int | None:
    """Just before a claimed row is tried: count the try, extend the claim by ``hold`` from ``now`` and return the
    row's number of tries, or None when the claim ran out and another sender took the row meanwhile (a round of slow
    sends can outlast it); nothing is counted then.

    A row's claim is its ``next_attempt_at``: unchanged since this sender set it, the row is still this sender's.
    """
    return session.execute(
        update(model)
        .where(model.id == row_id, model.next_attempt_at == claimed_until)
        .values(next_attempt_at=now + hold, attempts=model.attempts + 1)
        .returning(model.attempts)
    ).scalar_one_or_none()
