"""Deliveries of webhooks and postbacks: claiming what is due, recording each try, giving up, sending again.

As with mail, a sender claims a delivery by moving its next try past the time a send may take, sends with
no transaction open, then records the outcome. A 2xx answer delivers it; anything else (another status, a
timeout, a refused connection) schedules the next try with exponential backoff and jitter, for about three
days; after the last try the delivery is dead and its endpoint is turned off, so a receiver that is gone for
good stops costing anything. When a receiver answers again, its other waiting deliveries are due at once, so
one that was down for ten minutes gets everything once it is back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from affiliate.models import Delivery, Postback, WebhookEndpoint
from affiliate.services import claims
from affiliate.services.claims import claim_due_rows

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# Seconds before each retry: quick ones for a blip, then hours; their sum is about three days.
BACKOFF = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200, 57600, 57600, 57600)
JITTER = 0.2  # each wait is stretched or shrunk by up to a fifth, so retries of many messages spread out
PARKED = timedelta(hours=1)  # how long a delivery to a turned-off endpoint waits before it is looked at again
GATEWAY_DOWN = (502, 503, 504)  # what a proxy answers for a receiver behind it that is down or overloaded
ON_OUR_SIDE = "could not be sent (an error on our side)"
RESPONSE_MAX = 1024
ERROR_MAX = 500


@dataclass(frozen=True)
class Due:
    """A delivery as the sender needs it, read while it was claimed."""

    id: int
    message_id: str
    webhook_id: int | None
    postback_id: int | None
    event: str
    method: str
    url: str
    body: str | None
    created_at: datetime
    attempt: int  # tries so far, this one included once keep_claim has counted it
    claimed_until: datetime  # the claim's end, as set when claimed (claims.keep_claim)


def retry_delay(attempt: int, rand: random.Random | None = None) -> timedelta | None:
    """The wait after the ``attempt``-th failed try, with jitter; None once every retry is spent."""
    if attempt > len(BACKOFF):
        return None
    spread = 1 + JITTER * (2 * (rand or random).random() - 1)
    return timedelta(seconds=BACKOFF[attempt - 1] * spread)


def claim_due(session: Session, *, now: datetime, hold: timedelta, limit: int = 100) -> list[Due]:
    """Take up to ``limit`` due deliveries for ``hold``; on PostgreSQL other senders skip the locked rows."""
    claimed = []
    for row in claim_due_rows(session, Delivery, Delivery.status == PENDING, now=now, hold=hold, limit=limit):
        row.last_error = None  # in flight: a success elsewhere must not wake it (record_delivered)
        claimed.append(
            Due(
                row.id,
                row.message_id,
                row.webhook_id,
                row.postback_id,
                row.event,
                row.method,
                row.url,
                row.body,
                row.created_at,
                row.attempts,
                row.next_attempt_at,
            )
        )
    return claimed


def keep_claim(session: Session, due: Due, *, now: datetime, hold: timedelta) -> Due | None:
    """The delivery as this try sends it (the try counted, the claim extended), or None if another sender took it."""
    attempt = claims.keep_claim(session, Delivery, due.id, due.claimed_until, now=now, hold=hold)
    return None if attempt is None else replace(due, attempt=attempt)


def record_delivered(session: Session, due: Due, *, status: int, response: str, latency_ms: int, now: datetime) -> None:
    """A 2xx: delivered. The endpoint's other deliveries waiting out a retry because it could not be reached become
    due now: it answers again.

    Only those whose last try found nobody answering (no answer at all, or a gateway's 502, 503 or 504 in front of
    a receiver that is down), and each once in its life (``woken_at``). A message that fails while the receiver
    answers its others (refused by it, or failing alone behind its proxy) keeps its backoff: woken by every other
    message's success, it would spend its three days of retries in seconds and turn the endpoint off. And only
    those whose last try failed (``last_error`` set): a claim clears it, so a delivery another sender is sending
    right now is left alone; woken, it would be claimed and sent a second time.
    """
    session.execute(
        update(Delivery)
        .where(Delivery.id == due.id, Delivery.status == PENDING)
        .values(
            status=DELIVERED,
            delivered_at=now,
            last_attempt_at=now,
            last_status_code=status,
            last_response=response[:RESPONSE_MAX],
            last_latency_ms=latency_ms,
            last_error=None,
        )
    )
    owner = Delivery.webhook_id == due.webhook_id if due.webhook_id else Delivery.postback_id == due.postback_id
    session.execute(
        update(Delivery)
        .where(
            owner,
            Delivery.status == PENDING,
            Delivery.last_error.is_not(None),
            Delivery.last_error != ON_OUR_SIDE,
            or_(Delivery.last_status_code.is_(None), Delivery.last_status_code.in_(GATEWAY_DOWN)),
            Delivery.woken_at.is_(None),
            Delivery.next_attempt_at > now,
            Delivery.id != due.id,
        )
        .values(next_attempt_at=now, woken_at=now)
    )


def record_failed(
    session: Session,
    due: Due,
    *,
    error: str,
    now: datetime,
    status: int | None = None,
    response: str | None = None,
    latency_ms: int | None = None,
    rand: random.Random | None = None,
) -> bool:
    """Record a failed try: due again after the backoff, or dead when the retries are spent (returns True then,
    and turns the endpoint off)."""
    delay = retry_delay(due.attempt, rand)
    values = {
        "last_attempt_at": now,
        "last_status_code": status,
        "last_response": (response or "")[:RESPONSE_MAX] or None,
        "last_latency_ms": latency_ms,
        "last_error": error[:ERROR_MAX],
    }
    if delay is not None:
        values["next_attempt_at"] = now + delay
    else:
        values["status"] = DEAD
    session.execute(update(Delivery).where(Delivery.id == due.id, Delivery.status == PENDING).values(**values))
    if delay is None:
        reason = f"turned off after {due.attempt} failed tries of message {due.message_id}: {error}"[:500]
        model = WebhookEndpoint if due.webhook_id else Postback
        session.execute(
            update(model)
            .where(model.id == (due.webhook_id or due.postback_id), model.enabled.is_(True))
            .values(enabled=False, disabled_at=now, disabled_reason=reason)
        )
    return delay is None


def park(session: Session, due: Due, *, now: datetime) -> None:
    """Put back a delivery whose endpoint is turned off, its try not counted; turning the endpoint on wakes it."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == due.id, Delivery.status == PENDING)
        .values(attempts=Delivery.attempts - 1, next_attempt_at=now + PARKED, last_error="the endpoint is turned off")
    )


def wake(session: Session, *, now: datetime, webhook_id: int | None = None, postback_id: int | None = None) -> int:
    """Make the waiting deliveries of an endpoint due now (it was turned on again)."""
    owner = Delivery.webhook_id == webhook_id if webhook_id is not None else Delivery.postback_id == postback_id
    return session.execute(
        # Those put back or waiting out a retry (their last try says why); one a sender holds right now (a claim
        # clears its last error) is left to it, or it would be claimed and sent a second time.
        update(Delivery)
        .where(owner, Delivery.status == PENDING, Delivery.last_error.is_not(None))
        .values(next_attempt_at=now)
    ).rowcount


def redeliver(session: Session, delivery: Delivery, *, now: datetime) -> None:
    """Send a delivery again now (a dead one included), with the same message id; its tries start afresh."""
    delivery.status = PENDING
    delivery.next_attempt_at = now
    delivery.attempts = 0
    delivery.woken_at = None
    delivery.delivered_at = None


def log_of(
    session: Session, *, webhook_id: int | None = None, postback_id: int | None = None, limit: int = 100
) -> list[Delivery]:
    owner = Delivery.webhook_id == webhook_id if webhook_id is not None else Delivery.postback_id == postback_id
    return list(session.scalars(select(Delivery).where(owner).order_by(Delivery.id.desc()).limit(limit)))


def counts(session: Session, **owner: int) -> dict[str, int]:
    column = Delivery.webhook_id if "webhook_id" in owner else Delivery.postback_id
    value = next(iter(owner.values()))
    return dict(
        session.execute(select(Delivery.status, func.count()).where(column == value).group_by(Delivery.status)).all()
    )


def waiting(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == PENDING))
