"""Sending webhooks and postbacks: one round of the delivery sender.

Deliveries are written with their events (services/webhooks.py, services/postbacks.py) and sent here, by a
background thread of every portal process (affiliate/jobs.py) or `flask send-webhooks`. Every request goes
through affiliate/outbound.py, which refuses destinations inside our own network and never re-resolves a
checked host. A webhook is signed at each try with the endpoint's secret(s), as Standard Webhooks says:
the same ``webhook-id`` every time, a fresh ``webhook-timestamp``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from standardwebhooks.webhooks import Webhook

from affiliate import outbound
from affiliate.extensions import db
from affiliate.models import Postback, WebhookEndpoint, utcnow
from affiliate.services import deliveries, webhooks

log = logging.getLogger(__name__)


def signed_headers(endpoint: WebhookEndpoint, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers; during a secret's rotation, one signature per secret, space-separated."""
    signatures = [Webhook(secret).sign(message_id, now, body) for secret in webhooks.signing_secrets(endpoint, now)]
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def send_due(*, clock: Callable[[], datetime] = utcnow, limit: int = 100) -> tuple[int, int]:
    """Send one round of due deliveries; returns (delivered, failed)."""
    hold = timedelta(seconds=current_app.config["DELIVERY_CLAIM_SECONDS"])
    try:
        claimed = deliveries.claim_due(db.session, now=clock(), hold=hold, limit=limit)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    delivered = failed = 0
    for claim in claimed:
        # A round of slow receivers can outlast the claim, and another sender take what this one has not reached:
        # each message is checked to be still ours (and its claim extended, its try counted) just before it is sent.
        due = deliveries.keep_claim(db.session, claim, now=clock(), hold=hold)
        db.session.commit()
        if due is None:
            continue
        try:
            sent = _send(due, clock)
        except Exception:
            # A fault of ours with one message (not the receiver's) must not hold up the rest of the round.
            db.session.rollback()
            log.exception("sending delivery %s failed", due.message_id)
            dead = deliveries.record_failed(db.session, due, error=deliveries.ON_OUR_SIDE, now=clock())
            _tell_owner_if_dead(due, dead, clock())
            sent = False
        if sent:
            delivered += 1
        else:
            failed += 1
        db.session.commit()
    return delivered, failed


def _send(due: deliveries.Due, clock: Callable[[], datetime]) -> bool:
    config = current_app.config
    owner = _owner(due)
    now = clock()
    if owner is None or not owner.enabled:
        # Turned off (or deleted) after the message was written: it waits, its try not counted, and goes once the
        # endpoint is back on. Counting it would kill it after the last retry while nobody could receive it.
        deliveries.park(db.session, due, now=now)
        return False
    if due.webhook_id:
        headers = signed_headers(owner, due.message_id, due.body or "", now)
        url, allow_http = owner.url, False
    else:
        headers = {"content-type": "application/x-www-form-urlencoded"} if due.body is not None else {}
        url, allow_http = due.url, config["POSTBACK_ALLOW_HTTP"]
    # No transaction stays open while someone else's server takes its time: on SQLite it would hold the
    # write lock (every transaction begins IMMEDIATE), on PostgreSQL a connection idle in a transaction.
    db.session.commit()
    try:
        answer = outbound.send(
            url,
            method=due.method,
            body=due.body.encode() if due.body is not None else None,
            headers=headers,
            allow_http=allow_http,
            allow_loopback=config["OUTBOUND_ALLOW_LOOPBACK"],
        )
    except (outbound.UnsafeDestination, outbound.DeliveryFailed) as error:
        dead = deliveries.record_failed(db.session, due, error=str(error), now=clock())
        _tell_if_dead(owner, dead, clock())
        return False
    if 200 <= answer.status < 300:
        deliveries.record_delivered(
            db.session, due, status=answer.status, response=answer.body_head, latency_ms=answer.latency_ms, now=clock()
        )
        return True
    dead = deliveries.record_failed(
        db.session,
        due,
        error=f"answered {answer.status}",
        status=answer.status,
        response=answer.body_head,
        latency_ms=answer.latency_ms,
        now=clock(),
    )
    _tell_if_dead(owner, dead, clock())
    return False


def _owner(due: deliveries.Due) -> WebhookEndpoint | Postback | None:
    return (
        db.session.get(WebhookEndpoint, due.webhook_id) if due.webhook_id else db.session.get(Postback, due.postback_id)
    )


def _tell_owner_if_dead(due: deliveries.Due, dead: bool, now: datetime) -> None:
    owner = _owner(due)
    if owner is not None:
        _tell_if_dead(owner, dead, now)


def _tell_if_dead(owner: WebhookEndpoint | Postback, dead: bool, now: datetime) -> None:
    """A delivery ran out of retries, so its endpoint was turned off: its owner hears of it."""
    if not dead:
        return
    from affiliate import notifications
    from affiliate.models import User

    person = (
        db.session.get(User, owner.affiliate_id or owner.created_by_id)
        if isinstance(owner, Postback)
        else (db.session.get(User, owner.created_by_id))
    )
    if person is None:
        return
    what = "webhook endpoint" if isinstance(owner, WebhookEndpoint) else "postback"
    url = owner.url if isinstance(owner, WebhookEndpoint) else owner.url_template
    notifications.send(
        db.session, person, "endpoint_disabled", subject=f"Your {what} was turned off", now=now, what=what, url=url
    )
