"""Conversions that name a click still in a redirector's click log: stored at once, attributed when the click is.

The redirector answers a click once it is in its click log; the ingester stores it a moment later, or, under a
burst, minutes later. A conversion naming a click id issued within CLICK_HORIZON whose click is not stored after
CLICK_PATIENCE is stored all the same (the merchant's request is answered and nothing acknowledged is lost), but
credited to nobody, not screened, not announced and not evaluated: it waits for its click (``waiting_for_click``).

- When the ingester stores a batch of clicks, it attributes the conversions waiting for any of them
  (``attribute_arrived``); ``sweep`` (the money jobs, ``flask attribute-waiting``) attributes those whose click
  was stored without the ingester seeing them (a conversion committed just after the click's batch).
- A conversion whose click is not stored within GIVE_UP_AFTER is attributed without it (cookie, device,
  binding or code, as if it had named no click), and its trace says so.
- Attributing is prepare_conversion's attribution and screening, as of the conversion's arrival, with the
  click now present; the row is changed by a guarded UPDATE (only while it still waits), then announced as an
  attributed conversion is, once; the money job then evaluates it as any other.
- A refund of a waiting sale is stored and answered at once and waits with its sale: it takes the sale's
  attribution and is announced when the sale is attributed, and is reversed only after (accrual skips it).
- A replay of a waiting conversion answers with the conversion as stored: waiting, or attributed once it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from affiliate.models import Click, Conversion, ConversionStatus, Program
from affiliate.services.conversions import announce, attribute_report, waiting_report
from affiliate.services.signups import credit_late_signup

# How long a conversion waits for its click before it is attributed without it. A click log is durable: a
# redirector node that crashed stores its clicks when it is restarted, which an operator does within hours. A day
# covers that and still pays the sale within its hold period instead of keeping it from the money for good.
GIVE_UP_AFTER = timedelta(hours=24)
SWEEP_BATCH = 500

_conversions = Conversion.__table__


@dataclass(frozen=True)
class Swept:
    attributed: int  # their click was stored
    given_up: int  # attributed without their click, after GIVE_UP_AFTER


def waiting_for(connection: Connection, click_ids: Iterable[str]) -> list[int]:
    """The ids of the conversions waiting for any of these clicks (one indexed query)."""
    ids = list(click_ids)
    if not ids:
        return []
    # Conversions rarely wait, and a batch holds up to a few thousand click ids: an indexed probe for
    # any waiting conversion first spares the list's binding and lookup for nearly every batch. A
    # conversion that starts waiting after the probe could not have been seen by the list either.
    anyone = select(_conversions.c.id).where(_conversions.c.waiting_for_click.is_not(None)).limit(1)
    if connection.execute(anyone).first() is None:
        return []
    query = select(_conversions.c.id).where(_conversions.c.waiting_for_click.in_(ids)).order_by(_conversions.c.id)
    return list(connection.execute(query).scalars())


def attribute_arrived(session: Session, conversion_ids: Iterable[int], *, now: datetime) -> int:
    """Attribute conversions whose click was just stored; how many changed. The caller commits."""
    return sum(attribute_waiting(session, conversion_id, now=now) for conversion_id in conversion_ids)


def sweep(session: Session, *, now: datetime) -> Swept:
    """Attribute every waiting conversion whose click is stored, and those that waited GIVE_UP_AFTER without it."""
    arrived = session.scalars(
        select(Conversion.id)
        .join(Click, Click.click_id == Conversion.waiting_for_click)
        .where(Conversion.waiting_for_click.is_not(None))
        .order_by(Conversion.id)
        .limit(SWEEP_BATCH)
    ).all()
    attributed = attribute_arrived(session, arrived, now=now)
    overdue = session.scalars(
        select(Conversion.id)
        .where(Conversion.waiting_for_click.is_not(None), Conversion.waiting_since < now - GIVE_UP_AFTER)
        .order_by(Conversion.id)
        .limit(SWEEP_BATCH)
    ).all()
    given_up = sum(attribute_waiting(session, conversion_id, now=now) for conversion_id in overdue)
    return Swept(attributed, given_up)


def attribute_waiting(session: Session, conversion_id: int, *, now: datetime) -> bool:
    """Attribute one waiting conversion, with its click if it is stored by now; False when it no longer waits.

    Its row is locked first; a click that is still not stored is waited for until GIVE_UP_AFTER.
    """
    row = session.scalar(
        select(Conversion)
        .where(Conversion.id == conversion_id, Conversion.waiting_for_click.is_not(None))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if row is None:
        return False
    click_id, since = row.waiting_for_click, row.waiting_since
    stored = session.scalar(select(Click.id).where(Click.click_id == click_id)) is not None
    if not stored and now - since < GIVE_UP_AFTER:
        return False
    program = session.get(Program, row.program_id)
    fresh = attribute_report(
        session,
        program,
        waiting_report(row),
        occurred_at=row.occurred_at,
        now=row.created_at,  # as of its arrival: the same windows and counts an immediate answer would have seen
        stored_id=row.id,
        may_wait=False,
        paused=json.loads(row.decision_trace or "{}").get("program_paused"),
    )
    trace = json.loads(fresh.decision_trace)
    waited = round((now - since).total_seconds())
    if stored:
        why = (
            f"The click it names was still in a redirector's click log when the conversion arrived; "
            f"attributed when the click was stored {waited} s later."
        )
    else:
        why = (
            f"The click it names ({click_id}) was not stored within {GIVE_UP_AFTER.total_seconds() / 3600:g} h of "
            "the conversion; attributed without it."
        )
    trace["summary"] = f"{why} {trace['summary']}"
    trace["waited_for_click"] = {
        "click_id": click_id,
        "since": since.isoformat(),
        "seconds": waited,
        "click_stored": stored,
    }
    # Screening decides the status, unless staff already decided on the conversion while it waited.
    status = fresh.status if row.status == ConversionStatus.PENDING else row.status
    changed = session.execute(
        update(Conversion)
        .where(Conversion.id == row.id, Conversion.waiting_for_click.is_not(None))
        .values(
            affiliate_id=fresh.affiliate_id,
            click_id=fresh.click_id,
            customer_ip=fresh.customer_ip,
            customer_fingerprint=fresh.customer_fingerprint,
            coupon_id=fresh.coupon_id,
            coupon_with_click=fresh.coupon_with_click,
            decision_trace=json.dumps(trace),
            fraud_score=fresh.fraud_score or 0,
            fraud_reasons=fresh.fraud_reasons,
            status=status,
            waiting_for_click=None,
            waiting_since=None,
            waiting_report=None,
        )
        # The row is refreshed below; matching the UPDATE against every conversion of the session, as
        # SQLAlchemy would by default, cost each conversion of a sweep as much as the sweep's whole batch.
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return False
    session.refresh(row)
    credit_late_signup(session, row, now=now)
    session.flush()
    announce(session, row, now=now)
    _refunds_follow(session, row, now=now)
    return True


def _refunds_follow(session: Session, sale: Conversion, *, now: datetime) -> None:
    """The refunds stored while the sale waited take its attribution, and are announced after it."""
    refunds = session.scalars(
        select(Conversion)
        .where(Conversion.refund_of_id == sale.id)
        .order_by(Conversion.id)
        .with_for_update(key_share=True)
    ).all()
    followed = {"affiliate_id": sale.affiliate_id, "matched_by": json.loads(sale.decision_trace).get("matched_by")}
    for refund in refunds:
        refund.affiliate_id, refund.click_id = sale.affiliate_id, sale.click_id
        refund.decision_trace = json.dumps(json.loads(refund.decision_trace or "{}") | followed)
        session.flush()
        announce(session, refund, now=now)
