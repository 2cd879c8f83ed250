"""Affiliate postbacks: a server-to-server call to an affiliate's tracker when a conversion of theirs is recorded,
approved or reversed, its URL filled in from macros.

Macros go in the path and the query only: the scheme, host and port are fixed when the postback is saved and
checked as a destination then (and again at each send). Every value is percent-encoded into the template, so a
sub id cannot add a parameter or change the path. An affiliate's postback fires for that affiliate's own
conversions only; a program-wide one (set by an admin, ``affiliate_id`` None) fires for every conversion.

{status} is what the event says of the conversion, as trackers record it: when recorded, its status then
(pending, flagged or rejected by screening); "approved" when its commission is approved; "refunded" or "rejected"
when it is reversed. {commission} is the affiliate's own commission approved, or taken back by the reversal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from affiliate.database import take_turns
from affiliate.models import Click, Conversion, ConversionStatus, Delivery, Postback, Program, User
from affiliate.money import plain_amount
from affiliate.services import audit, deliveries
from affiliate.services.webhooks import new_message_id
from affiliate.urls import MAX_URL_LENGTH

EVENTS: dict[str, str] = {
    "conversion.recorded": "A conversion of yours is recorded",
    "conversion.approved": "Its commission is approved",
    "conversion.reversed": "It is refunded or rejected (commission reversed)",
}
MACROS = ("click_id", "sub1", "sub2", "sub3", "sub4", "sub5", "order_id", "amount", "commission", "currency",
          "status", "event", "conversion_id")  # fmt: skip
MACRO = re.compile(r"\{([a-z0-9_]*)\}")
QUERY_START = re.compile(r"[?#]")
METHODS = ("GET", "POST")
TEMPLATE_MAX = 2000
PER_PROGRAM = 5
# Built once, as in services.conversions: emit runs in the conversion API's write.
_POSTBACKS = (
    select(Postback)
    .where(
        Postback.program_id == bindparam("program_id"),
        Postback.enabled.is_(True),
        or_(Postback.affiliate_id == bindparam("affiliate_id"), Postback.affiliate_id.is_(None)),
    )
    .order_by(Postback.id)
)


class PostbackError(Exception):
    """A postback was refused; the message is safe to show."""


@dataclass(frozen=True)
class PostbackSettings:
    url_template: str
    method: str
    events: tuple[str, ...]


def check_template(template: str, check_url) -> str:
    """The template, trimmed, if its macros are known, none sits in the scheme, host or port, and the URL with
    sample values is a safe destination; raises PostbackError."""
    template = (template or "").strip()
    if not template:
        raise PostbackError("Enter the postback URL.")
    if len(template) > TEMPLATE_MAX:
        raise PostbackError(f"Use at most {TEMPLATE_MAX} characters.")
    unknown = sorted({name for name in MACRO.findall(template) if name not in MACROS})
    if unknown:
        raise PostbackError(
            f"Unknown macros: {', '.join('{' + name + '}' for name in unknown[:5])}. Known: "
            + ", ".join("{" + name + "}" for name in MACROS)
            + "."
        )
    scheme, _, rest = template.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "{" in scheme or "{" in authority or "}" in authority:
        raise PostbackError("Macros may go in the path and the query, not in the host.")
    try:
        # Read as the sender reads it, with two different values for every macro: a host that moves with them is
        # chosen by whoever sets a sub-ID (the text above misses what a URL parser does, such as "https:///{sub1}").
        one, other = (check_url(render(template, dict.fromkeys(MACROS, sample))) for sample in ("1", "ab"))
    except ValueError as error:
        raise PostbackError(str(error)) from None
    if (one.scheme, one.host, one.port) != (other.scheme, other.host, other.port):
        raise PostbackError("Macros may go in the path and the query, not in the host.")
    return template


def render(template: str, values: dict[str, object]) -> str:
    """The URL with each {macro} replaced by its value, percent-encoded (missing values are empty).

    Encoding keeps a value inside its path segment or query parameter, except for one case: a segment that
    a value makes "." or ".." (spelt "%2e" or not, a URL parser reads it as a step up the path). No URL can
    carry that segment, so its macros are left empty instead.
    """
    query = QUERY_START.search(template)
    split = query.start() if query else len(template)
    segments = []
    for segment in template[:split].split("/"):
        filled = _fill(segment, values)
        if filled != segment and filled.lower().replace("%2e", ".") in (".", ".."):
            filled = _fill(segment, {})
        segments.append(filled)
    return "/".join(segments) + _fill(template[split:], values)


def _fill(text: str, values: dict[str, object]) -> str:
    return MACRO.sub(lambda match: quote(str(values.get(match.group(1)) or ""), safe=""), text)


def parse_events(chosen: Iterable[str]) -> tuple[str, ...]:
    chosen = {event.strip() for event in chosen if event and event.strip()}
    unknown = sorted(chosen - EVENTS.keys())
    if unknown:
        raise PostbackError(f"Unknown events: {', '.join(unknown[:3])}.")
    if not chosen:
        raise PostbackError("Choose at least one event.")
    return tuple(sorted(chosen))


def postbacks_of(session: Session, program_id: int, affiliate_id: int | None) -> list[Postback]:
    """The postbacks an affiliate set for a program (``affiliate_id`` None: the program-wide ones)."""
    owner = Postback.affiliate_id.is_(None) if affiliate_id is None else Postback.affiliate_id == affiliate_id
    return list(session.scalars(select(Postback).where(Postback.program_id == program_id, owner).order_by(Postback.id)))


def save(
    session: Session,
    program: Program,
    affiliate_id: int | None,
    settings: PostbackSettings,
    *,
    actor: User,
    now: datetime,
    check_url,
    postback: Postback | None = None,
) -> Postback:
    """Add a postback (or change ``postback``) after checking its template, method and events."""
    template = check_template(settings.url_template, check_url)
    method = (settings.method or "GET").upper()
    if method not in METHODS:
        raise PostbackError("Choose GET or POST.")
    events = " ".join(parse_events(settings.events))
    before = None
    if postback is None:
        take_turns(session, Program, program.id)  # two adds at once must not both find room under the limit
        if len(postbacks_of(session, program.id, affiliate_id)) >= PER_PROGRAM:
            raise PostbackError(f"At most {PER_PROGRAM} postbacks per program.")
        postback = Postback(
            program_id=program.id,
            affiliate_id=affiliate_id,
            created_by_id=actor.id,
            created_at=now,
            url_template=template,
            method=method,
            events=events,
            enabled=True,
        )
        session.add(postback)
    else:
        before = {"url_template": postback.url_template, "method": postback.method, "events": postback.events}
        postback.url_template, postback.method, postback.events = template, method, events
        postback.enabled, postback.disabled_at, postback.disabled_reason = True, None, None
    session.flush()
    audit.record(
        session,
        actor_id=actor.id,
        action="postback.saved",
        subject_type="postback",
        subject_id=postback.id,
        before=before,
        after={
            "url_template": template,
            "method": method,
            "events": events,
            "program_id": program.id,
            "affiliate_id": affiliate_id,
        },
        now=now,
    )
    return postback


def set_enabled(session: Session, postback: Postback, enabled: bool, *, actor: User, now: datetime) -> None:
    """Turn a postback on or off; turned back on (after its tracker failed for days, say), its waiting calls go
    at once. Calls that ran out of retries stay so until ``resend_dead``."""
    before = {"enabled": postback.enabled}
    postback.enabled = enabled
    postback.disabled_at = None if enabled else now
    postback.disabled_reason = None if enabled else "turned off by hand"
    if enabled:
        deliveries.wake(session, now=now, postback_id=postback.id)
    audit.record(
        session,
        actor_id=actor.id,
        action="postback.enabled" if enabled else "postback.disabled",
        subject_type="postback",
        subject_id=postback.id,
        before=before,
        after={"enabled": enabled},
        now=now,
    )


def resend_dead(session: Session, postback: Postback, *, actor: User, now: datetime) -> int:
    """Send again, now and with their ids, the postback's calls that ran out of retries; how many."""
    dead = session.scalars(
        select(Delivery).where(Delivery.postback_id == postback.id, Delivery.status == deliveries.DEAD)
    ).all()
    for delivery in dead:
        deliveries.redeliver(session, delivery, now=now)
    if dead:
        audit.record(
            session,
            actor_id=actor.id,
            action="postback.resent",
            subject_type="postback",
            subject_id=postback.id,
            before=None,
            after={"deliveries": len(dead)},
            now=now,
        )
    return len(dead)


def delete(session: Session, postback: Postback, *, actor: User, now: datetime) -> None:
    before = {"url_template": postback.url_template}
    audit.record(
        session,
        actor_id=actor.id,
        action="postback.deleted",
        subject_type="postback",
        subject_id=postback.id,
        before=before,
        after=None,
        now=now,
    )
    session.delete(postback)


def emit(session: Session, conversion: Conversion, event: str, *, now: datetime, commission_cents: int = 0) -> int:
    """Write a delivery to every enabled postback of the conversion's affiliate (and the program-wide ones) that
    wants ``event``; how many were written."""
    if event not in EVENTS:
        raise ValueError(f"unknown postback event {event!r}")
    if conversion.affiliate_id is None:
        return 0
    found = session.scalars(
        _POSTBACKS, {"program_id": conversion.program_id, "affiliate_id": conversion.affiliate_id}
    ).all()
    found = [postback for postback in found if event in postback.events.split()]
    if not found:
        return 0
    values = macro_values(session, conversion, event, commission_cents)
    for postback in found:
        url = render(postback.url_template, values)
        body = urlencode(values) if postback.method == "POST" else None
        delivery = Delivery(
            message_id=new_message_id(),
            postback_id=postback.id,
            event=event,
            method=postback.method,
            url=url,
            body=body,
            created_at=now,
            status="pending",
            next_attempt_at=now,
            attempts=0,
        )
        if len(url) > MAX_URL_LENGTH:
            # Sub ids come from whoever clicks; filled in, they can make a URL no sender accepts. It is logged
            # as given up at once rather than retried for days (or failing the conversion's own write).
            delivery.url, delivery.status = url[:MAX_URL_LENGTH], "dead"
            delivery.last_error = f"the URL filled in is longer than {MAX_URL_LENGTH} characters"
        session.add(delivery)
    return len(found)


def macro_values(session: Session, conversion: Conversion, event: str, commission_cents: int) -> dict[str, str]:
    click = session.get(Click, conversion.click_id) if conversion.click_id else None
    return {
        "click_id": click.click_id if click else "",
        **{f"sub{n}": (getattr(click, f"sub{n}") or "") if click else "" for n in range(1, 6)},
        "order_id": conversion.order_id,
        "amount": plain_amount(conversion.amount_cents, conversion.currency),
        "commission": plain_amount(commission_cents, conversion.currency),
        "currency": conversion.currency,
        "status": _status(conversion, event),
        "event": event,
        "conversion_id": str(conversion.id),
    }


def _status(conversion: Conversion, event: str) -> str:
    if event == "conversion.approved":
        return "approved"  # its commission is; the conversion itself is approved only by a reviewer
    if event == "conversion.reversed":
        return "rejected" if conversion.status == ConversionStatus.REJECTED else "refunded"
    return conversion.status
