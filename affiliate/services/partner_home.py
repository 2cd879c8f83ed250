"""What an affiliate sees first: their money per currency, the last 30 days, and what is left to get started.

The money figures are the earnings page's own (``payout_reports.balances``, read from the ledger), so the two pages
agree to the cent. The next payout follows the batch rules of ``services.payouts``: an approved balance that reaches
the lowest minimum of the currency's programs is paid in the next batch, unless payout details are missing or were
changed within the cooling-off period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from affiliate.models import ClickRollup, Commission, Conversion, Payout, PayoutStatus, Program, User
from affiliate.money import to_decimal
from affiliate.services import enrollment, payout_reports
from affiliate.services import reports as report_service
from affiliate.services.payouts import COOLING_OFF
from affiliate.services.report_figures import Period, Row, Scope

DAYS = 30  # the home page's chart
ON_THE_WAY = (PayoutStatus.PENDING, PayoutStatus.APPROVED, PayoutStatus.HELD)  # reserved, not yet paid


@dataclass(frozen=True)
class Balance:
    """One currency's money as the affiliate's summary cards show it, in minor units."""

    currency: str
    pending: int  # accrued, in the hold period or waiting for review
    approved: int  # payable and in no payout yet; below zero when refunds after a payout are carried over
    paid: int  # every paid commission, all time
    on_the_way: int  # reserved in payouts being prepared or sent
    minimum: int | None  # the lowest minimum payout of the currency's programs; None when no program pays in it
    has_payout_details: bool
    held_until: datetime | None  # payout details changed recently: the next payout waits until then

    @property
    def due(self) -> bool:
        """Whether the approved balance is paid in the next batch, details allowing."""
        return self.minimum is not None and self.approved > 0 and self.approved >= self.minimum

    @property
    def short_by(self) -> int:
        """What is still needed to reach the minimum (0 once reached)."""
        return 0 if self.minimum is None else max(self.minimum - max(self.approved, 0), 0)


def balances(session: Session, affiliate: User, currencies: set[str], *, now: datetime) -> list[Balance]:
    """The affiliate's balances in every currency they have money in, and in ``currencies`` (their programs')."""
    found = payout_reports.balances(session, affiliate.id)
    minimums = dict(
        session.execute(
            select(Program.currency, func.min(Program.minimum_payout_cents)).group_by(Program.currency)
        ).all()
    )
    on_the_way = dict(
        session.execute(
            select(Payout.currency, func.sum(Payout.amount_cents))
            .where(Payout.affiliate_id == affiliate.id, Payout.status.in_(ON_THE_WAY))
            .group_by(Payout.currency)
        ).all()
    )
    changed = affiliate.payout_details_changed_at
    held_until = changed + COOLING_OFF if changed is not None and now - changed < COOLING_OFF else None
    return [
        Balance(
            currency=currency,
            pending=found.get(currency, {}).get("affiliate_pending", 0),
            approved=found.get(currency, {}).get("affiliate_payable", 0),
            paid=found.get(currency, {}).get("paid", 0),
            on_the_way=int(on_the_way.get(currency) or 0),
            minimum=minimums.get(currency),
            has_payout_details=affiliate.has_payout_details,
            held_until=held_until,
        )
        for currency in sorted(found.keys() | on_the_way.keys() | currencies)
    ]


@dataclass(frozen=True)
class Step:
    """One item of the getting-started checklist."""

    key: str
    text: str
    done: bool


def first_steps(session: Session, affiliate: User, *, enrolled: bool, links: int) -> list[Step]:
    """Join a program, make a link, add payout details, get a click, get a conversion: each done or not."""
    clicked = session.scalar(select(ClickRollup.day).where(ClickRollup.affiliate_id == affiliate.id).limit(1))
    converted = session.scalar(select(Conversion.id).where(Conversion.affiliate_id == affiliate.id).limit(1))
    return [
        Step("program", "Join a program", enrolled),
        Step("link", "Create your first link", links > 0),
        Step("payout", "Add your payout details", affiliate.has_payout_details),
        Step("click", "Get your first click", clicked is not None),
        Step("conversion", "Get your first signup or sale", converted is not None),
    ]


@dataclass(frozen=True)
class Day:
    day: date
    clicks: int  # human clicks
    sales: int
    earned: dict[str, int]  # currency -> minor units, live commissions on the day's conversions


@dataclass(frozen=True)
class Recent:
    """The last ``DAYS`` UTC days, today included."""

    period: Period
    days: list[Day]
    clicks: int
    sales: int
    signups: int
    earned: dict[str, int]

    @property
    def currencies(self) -> list[str]:
        return sorted(self.earned)

    def points(self, what: str, currency: str | None = None) -> list[tuple[str, int]]:
        """(day, value) per day for a chart; earnings in whole units of ``currency`` (the table has them exact)."""
        if what == "earned":
            return [(d.day.isoformat(), int(to_decimal(d.earned.get(currency, 0), currency))) for d in self.days]
        return [(d.day.isoformat(), getattr(d, what)) for d in self.days]


def recent(session: Session, affiliate_id: int, *, today: date) -> Recent:
    """Human clicks, sales and earnings per day over the last 30 days, from the reports' rollups."""
    period = Period(today - timedelta(days=DAYS - 1), today)
    overview = report_service.overview(session, Scope(affiliate_id), period)
    return Recent(
        period=period,
        days=[_day(row) for row in overview.days],
        clicks=overview.total.human,
        sales=overview.total.sales,
        signups=overview.total.signups,
        earned={currency: cents for currency, cents in overview.total.earned.items() if cents},
    )


def _day(row: Row) -> Day:
    return Day(row.key, row.figures.human, row.figures.sales, dict(row.figures.earned))


def summary(session: Session, affiliate: User, *, now: datetime) -> list[Balance]:
    """The summary cards of the partner home and the earnings page: every currency the affiliate has money in or
    a program they may promote pays in."""
    promoted = {entry.program.currency for entry in enrollment.standings(session, affiliate.id) if entry.can_promote}
    return balances(session, affiliate, promoted, now=now)


def payouts_of(session: Session, affiliate_id: int, commissions: list[Commission]) -> dict[int, Payout]:
    """The affiliate's payouts the given commissions are in, by id."""
    ids = {commission.payout_id for commission in commissions if commission.payout_id}
    if not ids:
        return {}
    found = select(Payout).where(Payout.id.in_(ids), Payout.affiliate_id == affiliate_id)
    return {payout.id: payout for payout in session.scalars(found)}
