"""Review decisions: conversions and commissions approved or rejected, once each, with what rejecting takes back.

A flagged conversion earns nothing until review approves it (the money job then evaluates it); a
rejected conversion earns nothing at all, so rejecting one that already has commissions takes every
one of them back, whatever its state (docs/money.md, "Rejecting a conversion"). A pending commission
can be approved before its hold has passed, or rejected, unless its conversion still waits for review.
Rejecting anything needs a note: it is kept in the audit log.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, selectinload

from affiliate import mail, notifications
from affiliate.models import Commission, CommissionStatus, Conversion, ConversionStatus, ConversionType, Program
from affiliate.services import accrual, audit, people, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.services.listing import ASC, Days, Sort, contains, ordered, within

DECISIONS = {"approve": ConversionStatus.APPROVED, "reject": ConversionStatus.REJECTED}
EVENTS = {"approve": "conversion.approved", "reject": "conversion.rejected"}  # the webhook event of each
# The review queue decides what screening flagged, once. Fraud found after the fact is a separate,
# deliberate act (``reopen``) that can reject a conversion that is already earning.
WAITING = (ConversionStatus.FLAGGED,)
EARNING = (ConversionStatus.PENDING, ConversionStatus.APPROVED)


NOTE_REQUIRED = "Say why when rejecting: the note is kept in the audit log."

# The sortable columns of the review queue and of the commissions table.
QUEUE_SORTS = {
    "flagged": Conversion.created_at,
    "occurred": Conversion.occurred_at,
    "order": Conversion.order_id,
    "amount": Conversion.amount_cents,
    "score": Conversion.fraud_score,
}
OLDEST_FLAGGED = Sort("flagged", ASC)
COMMISSION_SORTS = {
    "created": Commission.created_at,
    "order": Conversion.order_id,
    "amount": Commission.amount_cents,
    "status": Commission.status,
    "available": Commission.available_at,
}
OLDEST_COMMISSION = Sort("created", ASC)


class ReviewError(ValueError):
    """A decision that cannot be taken as asked; the message says why."""


def flagged(
    *,
    program_id: int | None = None,
    affiliate_id: int | None = None,
    rule: str | None = None,
    affiliate: str = "",
    order: str = "",
    days: Days | None = None,
    sort: Sort = OLDEST_FLAGGED,
) -> Select:
    """The review queue: flagged conversions, oldest first unless ``sort`` says otherwise, narrowed to a program,
    an affiliate (by id, or by a name, email or referral code), the name of a rule that flagged them, part of an
    order id, or the days they occurred on; each with its program loaded (a statement, for the paginator)."""
    query = (
        select(Conversion)
        .options(selectinload(Conversion.program))
        .where(Conversion.status == ConversionStatus.FLAGGED)
    )
    if program_id:
        query = query.where(Conversion.program_id == program_id)
    if affiliate_id:
        query = query.where(Conversion.affiliate_id == affiliate_id)
    if affiliate:
        query = query.where(Conversion.affiliate_id.in_(people.matching(affiliate)))
    if rule:
        # fraud_reasons is a JSON list of objects; a rule's name appears in it as "rule": "<name>".
        query = query.where(Conversion.fraud_reasons.contains(json.dumps({"rule": rule})[1:-1]))
    if order:
        query = query.where(contains(Conversion.order_id, order))
    if days:
        query = query.where(*within(Conversion.occurred_at, days))
    return ordered(query, sort, QUEUE_SORTS, Conversion.id)


def commissions(
    *,
    status: str | None = None,
    program_id: int | None = None,
    affiliate_id: int | None = None,
    affiliate: str = "",
    order: str = "",
    days: Days | None = None,
    sort: Sort = OLDEST_COMMISSION,
) -> Select:
    """Commissions oldest first unless ``sort`` says otherwise, narrowed to a status, a program, an affiliate (by
    id, or by a name, email or referral code), part of their conversion's order id, or the days they were made on
    (a statement, for the paginator)."""
    query = select(Commission).join(Conversion, Conversion.id == Commission.conversion_id)
    if status in set(CommissionStatus):
        query = query.where(Commission.status == status)
    if program_id:
        query = query.where(Commission.program_id == program_id)
    if affiliate_id:
        query = query.where(Commission.affiliate_id == affiliate_id)
    if affiliate:
        query = query.where(Commission.affiliate_id.in_(people.matching(affiliate)))
    if order:
        query = query.where(contains(Conversion.order_id, order))
    if days:
        query = query.where(*within(Commission.created_at, days))
    return ordered(query, sort, COMMISSION_SORTS, Commission.id)


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
        raise ReviewError(NOTE_REQUIRED)
    changed = []
    # One at a time in id order: each decision locks its conversion, then its commissions.
    for conversion_id in sorted(set(conversion_ids)):
        before = session.scalar(
            select(Conversion.status)
            .where(Conversion.id == conversion_id, Conversion.type != ConversionType.REFUND)
            .with_for_update(key_share=True)
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


def decide_commissions(
    session: Session,
    commission_ids: list[int],
    decision: str,
    *,
    actor_id: int | None,
    note: str | None,
    now: datetime,
) -> list[int]:
    """Approve or reject pending commissions, each once, with its ledger entry; one whose conversion still waits for
    review, or that is no longer pending, does not change. Returns the ids that changed."""
    if decision not in DECISIONS:
        raise ReviewError("Choose approve or reject.")
    if decision == "reject" and not note:
        raise ReviewError(NOTE_REQUIRED)
    changed = []
    # In id order, so that two finance people deciding overlapping selections lock rows in the same order.
    for commission in session.scalars(
        select(Commission).where(Commission.id.in_(set(commission_ids))).order_by(Commission.id)
    ):
        if decision == "approve":
            done = accrual.approve(session, commission, now=now, actor_id=actor_id)
        else:
            done = accrual.reject(session, commission, now=now, actor_id=actor_id, note=note)
        if done:
            changed.append(commission.id)
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
