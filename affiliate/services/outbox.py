"""The mail outbox: messages are written with the event that causes them and sent later, at least once.

Writing a message is an insert in the caller's transaction, so it exists exactly when the event does
and a slow or failing SMTP server never slows a page. A sender claims due messages in a short
transaction of its own by pushing their next attempt past the time a send may take, sends them with
no transaction open, then records each outcome: sent, or due again after a delay that doubles with
every failure. A sender killed mid-send leaves its claims to expire and another sender takes them
again, so a message may (rarely) arrive twice but is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from affiliate.models import OutboxMessage, utcnow
from affiliate.services import claims
from affiliate.services.claims import claim_due_rows

ERROR_MAX = 500


@dataclass(frozen=True)
class Mail:
    """A message as the sender needs it, read while it was claimed."""

    id: int
    to: str
    subject: str
    text: str
    html: str
    unsubscribe_url: str | None
    attempt: int  # tries so far, this one included once keep_claim has counted it
    claimed_until: datetime  # the claim's end, as set when claimed (claims.keep_claim)


@dataclass(frozen=True)
class Retry:
    first: timedelta
    longest: timedelta

    def after(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed try: the first delay, doubling, never above the longest."""
        return min(self.first * 2 ** min(max(attempts - 1, 0), 30), self.longest)


def queue(
    session: Session,
    *,
    kind: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    now: datetime,
    user_id: int | None = None,
    unsubscribe_url: str | None = None,
) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction; it is due at once (or at ``now``, if earlier)."""
    message = OutboxMessage(
        kind=kind,
        user_id=user_id,
        to_address=to,
        # A line break in a header would make the message fail on every try.
        subject=" ".join(subject.split())[:200],
        body_text=text,
        body_html=html,
        unsubscribe_url=unsubscribe_url,
        created_at=now,
        # A job run for a date ahead (`flask approve-due --days-ahead`) still mails now.
        next_attempt_at=min(now, utcnow()),
        attempts=0,
    )
    session.add(message)
    return message


def claim_due(session: Session, *, now: datetime, hold: timedelta, limit: int = 50) -> list[Mail]:
    """Take up to ``limit`` due messages for ``hold``: other senders skip them until then (``claim_due_rows``)."""
    claimed = []
    for row in claim_due_rows(session, OutboxMessage, OutboxMessage.sent_at.is_(None), now=now, hold=hold, limit=limit):
        claimed.append(
            Mail(
                row.id,
                row.to_address,
                row.subject,
                row.body_text,
                row.body_html,
                row.unsubscribe_url,
                row.attempts,
                row.next_attempt_at,
            )
        )
    return claimed


def keep_claim(session: Session, mail: Mail, *, now: datetime, hold: timedelta) -> Mail | None:
    """The message as this try sends it (the try counted, the claim extended), or None if another sender took it."""
    attempt = claims.keep_claim(session, OutboxMessage, mail.id, mail.claimed_until, now=now, hold=hold)
    return None if attempt is None else replace(mail, attempt=attempt)


def mark_sent(session: Session, message_id: int, *, now: datetime) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
        .values(sent_at=now, last_error=None)
    )


def mark_failed(session: Session, message_id: int, *, error: str, attempt: int, retry: Retry, now: datetime) -> None:
    """Record a failed try; the message is due again after the growing delay."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
        .values(last_error=error[:ERROR_MAX], next_attempt_at=now + retry.after(attempt))
    )


def send_again_now(session: Session, message_id: int, *, now: datetime) -> bool:
    """Make an unsent message due at once (the admin's "try again"); False if it was sent or is unknown."""
    return bool(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
            .values(next_attempt_at=now)
        ).rowcount
    )


def purge_sent(session: Session, *, before: datetime) -> int:
    """Delete mail sent before ``before``: once delivered, the outbox need not keep people's mail (links included)."""
    return session.execute(
        delete(OutboxMessage).where(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < before)
    ).rowcount


def waiting(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None)))


def recent(session: Session, *, limit: int = 100, unsent_only: bool = False) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if unsent_only:
        query = query.where(OutboxMessage.sent_at.is_(None))
    return list(session.scalars(query))
