"""What was paid: finance's yearly totals per affiliate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from affiliate.models import Payout, PayoutStatus, User


@dataclass(frozen=True)
class YearTotal:
    affiliate_id: int
    name: str
    email: str
    methods: tuple[str, ...]  # the payout methods actually used that year
    currency: str
    total_cents: int
    payouts: int


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
        YearTotal(affiliate_id, people[affiliate_id].name, people[affiliate_id].email, tuple(sorted(methods)),
                  currency, cents, payouts)
        for (affiliate_id, currency), (methods, cents, payouts) in merged.items()
    ]  # fmt: skip
    return sorted(totals, key=lambda t: (t.name.lower(), t.email, t.currency))
