"""Merchant webhooks: a program's endpoints, the events they receive, and the messages written for them.

A message is written to `deliveries` in the transaction of its event, so it exists exactly when the event
does; affiliate/delivery.py sends it, at least once, signed the Standard Webhooks way at each try (the
timestamp is part of the signature, and receivers refuse old ones). The body never changes between tries.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from affiliate.database import locked, take_turns
from affiliate.models import Delivery, Program, User, WebhookEndpoint
from affiliate.services import audit, deliveries

API_VERSION = "2026-12-01"  # the payloads' shape; a change that breaks receivers gets a new date
ALL = "*"
EVENTS: dict[str, str] = {
    "affiliate.applied": "An affiliate applied",
    "affiliate.approved": "An affiliate was approved",
    "affiliate.suspended": "An affiliate was suspended",
    "enrollment.approved": "An affiliate was enrolled in the program",
    "link.created": "An affiliate created a link",
    "conversion.created": "A conversion was recorded",
    "conversion.flagged": "A conversion was flagged for review",
    "conversion.approved": "A conversion was approved in review",
    "conversion.rejected": "A conversion was rejected",
    "refund.created": "A refund was recorded",
    "commission.created": "A commission was credited",
    "commission.approved": "A commission was approved",
    "commission.reversed": "A commission was reversed",
    "payout_batch.approved": "A payout batch was approved",
    "payout.paid": "A payout was paid",
    "payout.failed": "A payout failed",
}
ROTATION_OVERLAP = timedelta(hours=24)
ENDPOINTS_PER_PROGRAM = 20
DESCRIPTION_MAX = 200
# Built once: emit runs in the conversion API's write, where building a statement costs more than running it.
_PROGRAM_ENDPOINTS = (
    select(WebhookEndpoint)
    .where(WebhookEndpoint.program_id == bindparam("program_id"), WebhookEndpoint.enabled.is_(True))
    .order_by(WebhookEndpoint.id)
)


class WebhookError(Exception):
    """A change to an endpoint was refused; the message is safe to show."""


@dataclass(frozen=True)
class EndpointSettings:
    url: str
    events: tuple[str, ...]  # ("*",) for every event
    description: str | None = None


def new_secret() -> str:
    """A Standard Webhooks secret: "whsec_" and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def parse_events(chosen: Iterable[str]) -> tuple[str, ...]:
    """The event filter from a form or the API: known types only, or every event."""
    chosen = [event.strip() for event in chosen if event and event.strip()]
    if ALL in chosen:
        return (ALL,)
    unknown = sorted(set(chosen) - EVENTS.keys())
    if unknown:
        raise WebhookError(f"Unknown event types: {', '.join(unknown[:5])}.")
    if not chosen:
        raise WebhookError("Choose at least one event.")
    return tuple(sorted(set(chosen)))


def wants(endpoint: WebhookEndpoint, event: str) -> bool:
    events = endpoint.events.split()
    return ALL in events or event in events


def endpoints_of(session: Session, program_id: int) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.program_id == program_id).order_by(WebhookEndpoint.id)
        )
    )


def create_endpoint(
    session: Session, program: Program, settings: EndpointSettings, *, actor: User, now: datetime, check_url
) -> WebhookEndpoint:
    """Add an endpoint with a fresh secret; ``check_url`` refuses unsafe destinations (raises ValueError)."""
    take_turns(session, Program, program.id)  # two adds at once must not both find room under the limit
    if len(endpoints_of(session, program.id)) >= ENDPOINTS_PER_PROGRAM:
        raise WebhookError(f"A program has at most {ENDPOINTS_PER_PROGRAM} endpoints.")
    endpoint = WebhookEndpoint(
        program_id=program.id,
        url=_checked(settings.url, check_url),
        description=_description(settings.description),
        events=" ".join(parse_events(settings.events)),
        secret=new_secret(),
        enabled=True,
        created_by_id=actor.id,
        created_at=now,
    )
    session.add(endpoint)
    session.flush()
    _audit(session, actor, "webhook.created", endpoint, None, _shown(endpoint), now)
    return endpoint


def update_endpoint(
    session: Session, endpoint: WebhookEndpoint, settings: EndpointSettings, *, actor: User, now: datetime, check_url
) -> None:
    before = _shown(endpoint)
    endpoint.url = _checked(settings.url, check_url)
    endpoint.events = " ".join(parse_events(settings.events))
    endpoint.description = _description(settings.description)
    _audit(session, actor, "webhook.updated", endpoint, before, _shown(endpoint), now)


def rotate_secret(session: Session, endpoint: WebhookEndpoint, *, actor: User, now: datetime) -> str:
    """A new secret; the old one still signs (alongside) for ROTATION_OVERLAP, so receivers can switch over."""
    locked(session, endpoint)  # two rotations at once: the second keeps the first one's secret as the previous one
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    _audit(session, actor, "webhook.secret_rotated", endpoint, None, {"overlap_hours": 24}, now)
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a message is signed with now: the current one, and the previous one during its overlap."""
    found = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and now < endpoint.previous_secret_until:
        found.append(endpoint.previous_secret)
    return found


def set_enabled(
    session: Session,
    endpoint: WebhookEndpoint,
    enabled: bool,
    *,
    actor: User | None,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Turn an endpoint on or off; turned back on, its waiting messages go at once (dead ones stay dead)."""
    endpoint.enabled = enabled
    if enabled:
        deliveries.wake(session, now=now, webhook_id=endpoint.id)
    endpoint.disabled_at = None if enabled else now
    endpoint.disabled_reason = None if enabled else (reason or "turned off by an admin")[:500]
    if actor is not None:
        _audit(
            session,
            actor,
            "webhook.enabled" if enabled else "webhook.disabled",
            endpoint,
            None,
            {"reason": endpoint.disabled_reason},
            now,
        )


def delete_endpoint(session: Session, endpoint: WebhookEndpoint, *, actor: User, now: datetime) -> None:
    _audit(session, actor, "webhook.deleted", endpoint, _shown(endpoint), None, now)
    session.delete(endpoint)


def emit(session: Session, program_id: int, event: str, data: dict, *, now: datetime) -> int:
    """Write one message per enabled endpoint of the program that wants ``event``; how many were written."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    return _write(session, session.scalars(_PROGRAM_ENDPOINTS, {"program_id": program_id}), event, data, now=now)


def emit_everywhere(session: Session, event: str, data: dict, *, now: datetime, currency: str | None = None) -> int:
    """Write ``event`` to the enabled endpoints of every program (those paying in ``currency``, when given).

    For events that belong to no one program: an affiliate's account is the same in every program, and a
    payout pays what the programs of its currency owe. An endpoint set on several programs gets the message
    once per program, each with its own id.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    query = select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)
    if currency is not None:
        query = query.join(Program, Program.id == WebhookEndpoint.program_id).where(Program.currency == currency)
    return _write(session, session.scalars(query), event, data, now=now)


def _write(session: Session, found: Iterable[WebhookEndpoint], event: str, data: dict, *, now: datetime) -> int:
    endpoints = [endpoint for endpoint in found if wants(endpoint, event)]
    if not endpoints:
        return 0
    body = json.dumps(
        {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "api_version": API_VERSION, "data": data},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )
    for endpoint in endpoints:
        session.add(
            Delivery(
                message_id=new_message_id(),
                webhook_id=endpoint.id,
                event=event,
                method="POST",
                url=endpoint.url,
                body=body,
                created_at=now,
                status="pending",
                next_attempt_at=now,
                attempts=0,
            )
        )
    return len(endpoints)


def _checked(url: str, check_url) -> str:
    url = (url or "").strip()
    try:
        return check_url(url).url
    except ValueError as error:
        raise WebhookError(str(error)) from None


def _description(text: str | None) -> str | None:
    text = " ".join((text or "").split())
    return text[:DESCRIPTION_MAX] or None


def _shown(endpoint: WebhookEndpoint) -> dict:
    return {"url": endpoint.url, "events": endpoint.events, "description": endpoint.description}


def _audit(session, actor: User, action: str, endpoint: WebhookEndpoint, before, after, now: datetime) -> None:
    audit.record(
        session,
        actor_id=actor.id,
        action=action,
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        before=before,
        after=after,
        now=now,
    )
