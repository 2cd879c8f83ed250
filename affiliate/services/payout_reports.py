"""What was paid and what is owed: finance's yearly totals per affiliate, and an affiliate's own statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from affiliate.models import (
    Adjustment,
    AdjustmentStatus,
    Commission,
    Conversion,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutStatus,
    Program,
    User,
)


@dataclass(frozen=True)
class YearTotal:
    affiliate_id: int
    name: str
    email: str
    methods: tuple[str, ...]  # the payout methods actually used that year
    currency: str
    total_cents: int
    payouts: int


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    currency: str
    kind: str
    description: str
    amount_cents: int  # positive: now owed to the affiliate; negative: paid out or taken back
    balance_cents: int  # what the affiliate is owed in this currency (pending and approved) after this line


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year in UTC as [start, end)."""
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def paid_in_year(session: Session, year: int) -> list[YearTotal]:
    """Per affiliate and currency, the payouts marked paid during the calendar year (UTC)."""
    start, end = year_bounds(year)
    rows = session.execute(
        select(Payout.affiliate_id, Payout.currency, Payout.method, func.sum(Payout.amount_cents), func.count())
        .where(Payout.status == PayoutStatus.PAID, Payout.paid_at >= start, Payout.paid_at < end)
        .group_by(Payout.affiliate_id, Payout.currency, Payout.method)
    ).all()
    merged: dict[tuple[int, str], tuple[set[str], int, int]] = {}
    for affiliate_id, currency, method, total, count in rows:
        methods, cents, payouts = merged.get((affiliate_id, currency), (set(), 0, 0))
        merged[(affiliate_id, currency)] = (methods | {method}, cents + int(total), payouts + count)
    people = {user.id: user for user in session.scalars(select(User).where(User.id.in_({a for a, _ in merged})))}
    totals = [
        YearTotal(
            affiliate_id,
            people[affiliate_id].name,
            people[affiliate_id].email,
            tuple(sorted(methods)),
            currency,
            cents,
            payouts,
        )
        for (affiliate_id, currency), (methods, cents, payouts) in merged.items()
    ]
    return sorted(totals, key=lambda t: (t.name.lower(), t.email, t.currency))


def statement(session: Session, affiliate_id: int) -> list[StatementLine]:
    """Every movement of what the affiliate is owed, oldest first, with a running balance per currency.

    Built from the ledger's entries on the affiliate's own accounts, so it always agrees with the
    books: commissions earned, rejected or reversed by refunds, bonuses and clawbacks, payouts reserved
    for them, and failed payouts returned. Approvals only move money from pending to approved and are left out.
    """
    accounts = (f"affiliate_pending:{affiliate_id}", f"affiliate_payable:{affiliate_id}")
    rows = session.execute(
        select(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            LedgerTransaction.created_at,
            LedgerEntry.currency,
            func.sum(LedgerEntry.amount_cents),
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.account.in_(accounts))
        .group_by(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            LedgerTransaction.created_at,
            LedgerEntry.currency,
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    ).all()
    commission_ids = {
        _id_after(reference, "commission:") for _, kind, reference, *_ in rows if not kind.startswith("payout")
    }
    adjustment_ids = {_id_after(reference, "adjustment:") for _, kind, reference, *_ in rows if kind == "adjustment"}
    adjustments = {
        adjustment.id: adjustment
        for adjustment in session.scalars(
            select(Adjustment).where(
                Adjustment.id.in_(adjustment_ids - {None}), Adjustment.affiliate_id == affiliate_id
            )
        )
    }
    payout_ids = {_id_after(reference, "payout:") for _, kind, reference, *_ in rows if kind.startswith("payout")}
    commissions = {
        row.id: row
        for row in session.execute(
            select(Commission.id, Commission.tier_level, Commission.rule, Conversion.order_id)
            .join(Conversion, Conversion.id == Commission.conversion_id)
            .where(Commission.id.in_(commission_ids - {None}), Commission.affiliate_id == affiliate_id)
        )
    }
    payouts = {
        payout.id: payout
        for payout in session.scalars(
            select(Payout).where(Payout.id.in_(payout_ids - {None}), Payout.affiliate_id == affiliate_id)
        )
    }
    balances: dict[str, int] = {}
    lines = []
    for _, kind, reference, at, currency, total in rows:
        owed = -int(total)  # credits to the affiliate's accounts are what they are owed
        if not owed:
            continue
        balances[currency] = balances.get(currency, 0) + owed
        if kind == "adjustment" and (adjustment := adjustments.get(_id_after(reference, "adjustment:"))):
            label = adjustment.kind
            description = f"{adjustment.kind.capitalize()} #{adjustment.id}: {adjustment.reason}"
        else:
            label, description = _describe(kind, reference, commissions, payouts)
        lines.append(StatementLine(at, currency, label, description, owed, balances[currency]))
    return lines


def _id_after(reference: str, prefix: str) -> int | None:
    """The id in a ledger reference such as "commission:12", "payout:5", "adjustment:3" or "refund:9:commission:12"."""
    position = reference.rfind(prefix)
    if position < 0:
        return None
    tail = reference[position + len(prefix) :]
    return int(tail) if tail.isascii() and tail.isdigit() else None


def _describe(kind: str, reference: str, commissions: dict, payouts: dict[int, Payout]) -> tuple[str, str]:
    if kind.startswith("payout"):
        payout = payouts.get(_id_after(reference, "payout:"))
        if payout is None:
            return "payout", reference
        if kind == "payout_failed":
            return "payout returned", f"Payout #{payout.id} failed; the amount is back in your balance"
        if kind == "payout_cancel":
            return "payout returned", f"Payout #{payout.id} was cancelled; the amount is back in your balance"
        if payout.status == PayoutStatus.PAID:
            paid = payout.paid_at.strftime("%Y-%m-%d") if payout.paid_at else ""
            state = f"paid {paid}, reference {payout.external_reference}"
        else:
            state = {PayoutStatus.FAILED: "failed", PayoutStatus.CANCELLED: "cancelled", PayoutStatus.HELD: "held"}.get(
                payout.status, "awaiting payment"
            )
        return "payout", f"Payout #{payout.id} by {payout.method} ({state})"
    commission = commissions.get(_id_after(reference, "commission:"))
    if commission is None:
        return kind, reference
    # A recruit's order ids are theirs, not the recruiter's to see, as on the earnings page.
    what = f"order {commission.order_id}" if commission.tier_level == 1 else "a partner you recruited"
    if kind == "accrual":
        return "commission", f"Commission #{commission.id} for {what} ({commission.rule})"
    if kind == "reversal":
        return "refund", f"Commission #{commission.id} for {what} reversed by a refund"
    if kind == "rejection":
        return "rejection", f"Commission #{commission.id} for {what} rejected"
    return kind, f"Commission #{commission.id} for {what}"


def balances(session: Session, affiliate_id: int) -> dict[str, dict[str, int]]:
    """An affiliate's balances per currency: each ledger account's total as owed to them (``affiliate_pending``,
    ``affiliate_payable``, ...), and ``paid``, what their payouts marked paid came to: the money they were sent,
    bonuses included (a refund after the payout is a clawback in their balance, not money taken back from it)."""
    found: dict[str, dict[str, int]] = {}
    for account, currency, total in session.execute(
        select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.affiliate_id == affiliate_id)
        .group_by(LedgerEntry.account, LedgerEntry.currency)
    ):
        # Credits to the affiliate are negative in the ledger; shown as what is owed to them.
        found.setdefault(currency, {})[account.split(":", 1)[0]] = -int(total)
    for currency, total in session.execute(
        select(Payout.currency, func.sum(Payout.amount_cents))
        .where(Payout.affiliate_id == affiliate_id, Payout.status == PayoutStatus.PAID)
        .group_by(Payout.currency)
    ):
        found.setdefault(currency, {})["paid"] = int(total)
    return found


def commissions_of(affiliate_id: int) -> Select:
    """An affiliate's commissions, newest first (a statement, for the paginator)."""
    return (
        select(Commission)
        .where(Commission.affiliate_id == affiliate_id)
        .order_by(Commission.created_at.desc(), Commission.id.desc())
    )


def order_ids(session: Session, conversion_ids: set[int]) -> dict[int, str]:
    """The merchant's order id of each conversion."""
    return dict(
        session.execute(select(Conversion.id, Conversion.order_id).where(Conversion.id.in_(conversion_ids))).all()
    )


def recent_payouts(session: Session, affiliate_id: int, limit: int) -> list[Payout]:
    """An affiliate's latest payouts, newest first."""
    return list(
        session.scalars(
            select(Payout)
            .where(Payout.affiliate_id == affiliate_id)
            .order_by(Payout.created_at.desc(), Payout.id.desc())
            .limit(limit)
        )
    )


def posted_adjustments(session: Session, affiliate_id: int, limit: int) -> list[Row]:
    """An affiliate's latest approved adjustments, each with its program's name. Only approved ones: a bonus waiting
    for a second approver is not yet owed, and a rejected one never was."""
    return list(
        session.execute(
            select(Adjustment, Program.name)
            .join(Program, Program.id == Adjustment.program_id)
            .where(Adjustment.affiliate_id == affiliate_id, Adjustment.status == AdjustmentStatus.APPROVED)
            .order_by(Adjustment.approved_at.desc(), Adjustment.id.desc())
            .limit(limit)
        ).all()
    )
