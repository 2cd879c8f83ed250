"""Review decisions on conversions: approve or reject, once each, with what rejecting takes back.

A flagged conversion earns nothing until review approves it (the money job then evaluates it); a
rejected conversion earns nothing at all, so rejecting one that already has commissions takes every
one of them back, whatever its state (docs/money.md, "Rejecting a conversion").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from affiliate import mail, notifications
from affiliate.models import Conversion, ConversionStatus, ConversionType, Program
from affiliate.services import accrual, audit, webhooks
from affiliate.services import webhook_payloads as payloads

DECISIONS = {"approve": ConversionStatus.APPROVED, "reject": ConversionStatus.REJECTED}
EVENTS = {"approve": "conversion.approved", "reject": "conversion.rejected"}  # the webhook event of each
# The review queue decides what screening flagged, once. Fraud found after the fact is a separate,
# deliberate act (``reopen``) that can reject a conversion that is already earning.
WAITING = (ConversionStatus.FLAGGED,)
EARNING = (ConversionStatus.PENDING, ConversionStatus.APPROVED)


class ReviewError(ValueError):
    """A decision that cannot be taken as asked; the message says why."""


def decide(
    session: Session,
    conversion_ids: list[int],
    decision: str,
    *,
    actor_id: int | None,
    note: str | None,
    now: datetime,
    reopen: bool = False,
) -> list[int]:
    """Approve or reject conversions; only those still flagged change, or with ``reopen`` (rejecting
    only) those already earning. Each change is told to the program's webhook endpoints (conversion.approved
    or .rejected). Returns the ids that changed."""
    if decision not in DECISIONS:
        raise ReviewError("Choose approve or reject.")
    if reopen and decision != "reject":
        raise ReviewError("Only a rejection reopens a decided conversion.")
    decidable = WAITING + EARNING if reopen else WAITING
    if decision == "reject" and not note:
        raise ReviewError("Say why when rejecting: the note is kept in the audit log.")
    changed = []
    # One at a time in id order: each decision locks its conversion, then its commissions.
    for conversion_id in sorted(set(conversion_ids)):
        before = session.scalar(
            select(Conversion.status)
            .where(Conversion.id == conversion_id, Conversion.type != ConversionType.REFUND)
            .with_for_update()
        )
        if before not in decidable:
            continue
        session.execute(update(Conversion).where(Conversion.id == conversion_id).values(status=DECISIONS[decision]))
        changed.append(conversion_id)
        conversion = session.get(Conversion, conversion_id, populate_existing=True)
        webhooks.emit(session, conversion.program_id, EVENTS[decision], payloads.conversion(conversion), now=now)
        if decision == "reject":
            taken_back = accrual.take_back(session, conversion_id, now=now, actor_id=actor_id, note=note)
            _tell_rejected(session, conversion_id, taken_back, now=now)
        audit.record(
            session,
            actor_id=actor_id,
            action=f"conversion.{decision}",
            subject_type="conversion",
            subject_id=conversion_id,
            before={"status": before},
            after={"status": DECISIONS[decision].value},
            now=now,
            note=note or None,
        )
    return changed


def _tell_rejected(session: Session, conversion_id: int, taken_back: int, *, now: datetime) -> None:
    """Tell the affiliate credited with a rejected conversion that it was rejected and earns nothing, and why in
    redacted words: the kinds of check it failed, never their evidence, nor the note reviewers write for the
    audit log."""
    conversion = session.get(Conversion, conversion_id)
    if conversion.affiliate_id is None:
        return
    program = session.get(Program, conversion.program_id)
    notifications.tell_affiliate(
        session,
        conversion.affiliate_id,
        "conversion_rejected",
        subject=f"A {conversion.type} in {notifications.one_line(program.name)} was rejected",
        now=now,
        conversion=conversion,
        program=program,
        taken_back=taken_back,
        conversion_url=mail.external_url("partner_conversions.mine_show", conversion_id=conversion.id),
        reasons=notifications.rejection_reasons(conversion.fraud_reasons),
    )
