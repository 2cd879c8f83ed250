"""An affiliate's own conversions: filtered, searched by order id, each with their commission on it and where it
stands in words they can act on.

The words are redacted as the rejection mail and the affiliate's trace are: the kind of check a conversion failed
(``notifications.rejection_reasons``), never its evidence, thresholds or rule settings, and never the note a
reviewer writes for the audit log (it may name other people, addresses or devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from affiliate.models import (
    AuditLog,
    Commission,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    Program,
)
from affiliate.notifications import rejection_reasons
from affiliate.services.report_figures import Period

# The statuses an affiliate filters by, in their words.
STATUS_NAMES = {
    ConversionStatus.PENDING: "Pending",
    ConversionStatus.APPROVED: "Approved",
    ConversionStatus.FLAGGED: "On hold for review",
    ConversionStatus.REJECTED: "Rejected",
}
TYPE_NAMES = {ConversionType.SALE: "Sale", ConversionType.SIGNUP: "Signup", ConversionType.REFUND: "Refund"}
SEARCH_MAX = 128  # an order id is at most this long


@dataclass(frozen=True)
class Wanted:
    """What the affiliate narrows their list to; None leaves that column alone."""

    program_id: int | None = None
    type: str | None = None
    status: str | None = None
    start: date | None = None  # UTC days, both included
    end: date | None = None
    order: str | None = None  # part of an order id


def mine(affiliate_id: int, wanted: Wanted) -> Select:
    """The affiliate's conversions matching ``wanted``, newest first (a statement, for the paginator)."""
    query = select(Conversion).where(Conversion.affiliate_id == affiliate_id)
    if wanted.program_id:
        query = query.where(Conversion.program_id == wanted.program_id)
    if wanted.type in set(ConversionType):
        query = query.where(Conversion.type == wanted.type)
    if wanted.status in set(ConversionStatus):
        query = query.where(Conversion.status == wanted.status)
    if wanted.start is not None:
        query = query.where(Conversion.occurred_at >= Period(wanted.start, wanted.start).start_at)
    if wanted.end is not None:
        query = query.where(Conversion.occurred_at < Period(wanted.end, wanted.end).end_at)
    if wanted.order:
        query = query.where(Conversion.order_id.icontains(wanted.order[:SEARCH_MAX], autoescape=True))
    return query.order_by(Conversion.occurred_at.desc(), Conversion.id.desc())


@dataclass(frozen=True)
class Standing:
    """A conversion as its affiliate reads it: what they earn on it and where it stands."""

    commission_cents: int | None  # the sum of the affiliate's own commission lines on it; None without any
    label: str  # a short status: "Approved", "Rejected", "On hold for review", ...
    badge: str  # the badge's colour: a status the stylesheet knows (badge-<badge>), or "" for plain grey
    reason: str  # a sentence they can act on, or ""


@dataclass(frozen=True)
class _Facts:
    lines: list[tuple[str, int]]  # (status, amount) of the affiliate's commission lines
    refunded: bool  # a refund of it was recorded
    reviewed: bool  # a person rejected it (the review queue, or reopening a decided one)
    commission_rejected: bool  # a person rejected a commission of it while the conversion stood


def standings(session: Session, affiliate_id: int, conversions: list[Conversion]) -> dict[int, Standing]:
    """Each conversion's ``Standing`` for the affiliate, in four queries for the whole page."""
    ids = [conversion.id for conversion in conversions]
    if not ids:
        return {}
    lines: dict[int, list[tuple[str, int]]] = {}
    commission_ids: dict[int, int] = {}
    for commission_id, conversion_id, status, cents in session.execute(
        select(Commission.id, Commission.conversion_id, Commission.status, Commission.amount_cents).where(
            Commission.affiliate_id == affiliate_id, Commission.conversion_id.in_(ids)
        )
    ):
        lines.setdefault(conversion_id, []).append((status, int(cents)))
        commission_ids[commission_id] = conversion_id
    refunded = set(
        session.scalars(
            select(Conversion.refund_of_id)
            .where(Conversion.refund_of_id.in_(ids), Conversion.type == ConversionType.REFUND)
            .group_by(Conversion.refund_of_id)
        )
    )
    reviewed = set(
        session.scalars(
            select(AuditLog.subject_id).where(
                AuditLog.subject_type == "conversion",
                AuditLog.subject_id.in_(ids),
                AuditLog.action == "conversion.reject",
                AuditLog.actor_id.is_not(None),
            )
        )
    )
    rejected_by_hand = {
        commission_ids[subject]
        for subject in session.scalars(
            select(AuditLog.subject_id).where(
                AuditLog.subject_type == "commission",
                AuditLog.subject_id.in_(list(commission_ids) or [0]),
                AuditLog.action == "commission.rejection",
                AuditLog.actor_id.is_not(None),
            )
        )
    }
    return {
        conversion.id: describe(
            conversion,
            _Facts(
                lines.get(conversion.id, []),
                conversion.id in refunded,
                conversion.id in reviewed,
                conversion.id in rejected_by_hand,
            ),
        )
        for conversion in conversions
    }


def describe(conversion: Conversion, facts: _Facts) -> Standing:
    """Where one conversion stands, in the affiliate's words."""
    cents = sum(amount for _, amount in facts.lines) if facts.lines else None
    statuses = {status for status, _ in facts.lines}
    if conversion.type == ConversionType.REFUND:
        return Standing(None, "Refund", "", "The customer was refunded: its share of your commission is taken back.")
    if conversion.status == ConversionStatus.REJECTED:
        why = "; ".join(rejection_reasons(conversion.fraud_reasons))
        if facts.reviewed:
            reason = f"Rejected by review: {why}." if why else "Rejected by review. It earns nothing."
        else:
            reason = f"Rejected: {why}." if why else "Rejected: it did not pass the program's checks."
        return Standing(cents, "Rejected", "rejected", reason)
    if conversion.status == ConversionStatus.FLAGGED:
        return Standing(cents, "On hold", "pending", "On hold for review: it earns once a person approves it.")
    if not facts.lines:
        if conversion.evaluated_at is None:
            return Standing(None, "Pending", "pending", "Its commission is being worked out.")
        return Standing(None, "No commission", "", "Not credited: the program's plan pays nothing for it.")
    live = statuses & {CommissionStatus.PENDING, CommissionStatus.APPROVED, CommissionStatus.PAID}
    if not live:
        if CommissionStatus.REVERSED in statuses and facts.refunded:
            return Standing(cents, "Reversed", "rejected", "Reversed: the order was refunded.")
        if facts.commission_rejected:
            return Standing(cents, "Rejected", "rejected", "Rejected by review: the commission was not approved.")
        return Standing(cents, "Rejected", "rejected", "Rejected: the commission was taken back.")
    partly = " Part of it was taken back: the order was partly refunded." if facts.refunded else ""
    if live == {CommissionStatus.PAID}:
        return Standing(cents, "Paid", "active", "Paid to you." + partly)
    if CommissionStatus.PENDING in live:
        return Standing(cents, "Pending", "pending", "In the hold period; approved when it ends." + partly)
    return Standing(cents, "Approved", "active", "Approved: paid with your next payout." + partly)


def programs_of(session: Session, affiliate_id: int) -> list[tuple[int, str]]:
    """The programs the affiliate has conversions in, by name, for the filter."""
    found = session.execute(
        select(Program.id, Program.name)
        .where(Program.id.in_(select(Conversion.program_id).where(Conversion.affiliate_id == affiliate_id)))
        .order_by(func.lower(Program.name))
    )
    return [(program_id, name) for program_id, name in found]
