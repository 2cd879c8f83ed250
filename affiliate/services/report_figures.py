"""The figures a report shows, and what each means (the pages say the same).

- **raw, human, unique clicks**: as ``affiliate.services.traffic`` defines them, read from the
  click rollups, never from raw clicks.
- **signups, sales**: attributed conversions of that type that fraud review did not reject, on
  the UTC day they occurred.
- **revenue**: those sales' amounts less the refunds of them (on the refund's day), per currency.
- **conversion rate**: signups and sales per 100 human clicks.
- **commissions**: every commission of the affiliate on conversions in the range (a second tier
  from recruited affiliates included), by its status now.
- **earned** and **EPC**: live commissions (pending, approved, paid) on the affiliate's own
  conversions, and those per human click, per currency: a currency's earnings over the human clicks on the
  programs that pay in it; a breakdown credits them to the conversion's click.

The queries that fill them are ``affiliate.services.reports``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from affiliate.models import ConversionType
from affiliate.money import to_decimal

RATE_PLACES = Decimal("0.01")
EPC_PLACES = Decimal("0.0001")  # a click often earns a fraction of a cent
MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        """The first moment after the period (exclusive)."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)


@dataclass(frozen=True)
class Scope:
    """Whose data: one affiliate's (every affiliate's when None), of one program or all."""

    affiliate_id: int | None = None
    program_id: int | None = None


@dataclass
class ClickCounts:
    """Raw, human and unique clicks, with the human ones per currency of the clicked program."""

    raw: int = 0
    human: int = 0
    unique: int = 0
    human_in: dict[str, int] = field(default_factory=dict)

    def add(self, raw: int, human: int, unique: int, human_in: dict[str, int]) -> None:
        self.raw, self.human, self.unique = self.raw + raw, self.human + human, self.unique + unique
        for currency, count in human_in.items():
            self.human_in[currency] = self.human_in.get(currency, 0) + count

    def less(self, parts: Iterable[ClickCounts]) -> ClickCounts:
        """What is left of these counts once the parts are taken away (clicks without a breakdown's value)."""
        left = ClickCounts(self.raw, self.human, self.unique, dict(self.human_in))
        for part in parts:
            left.add(-part.raw, -part.human, -part.unique, {c: -n for c, n in part.human_in.items()})
        return left


@dataclass
class Figures:
    raw: int = 0
    human: int = 0
    unique: int = 0
    human_in: dict[str, int] = field(default_factory=dict)  # currency -> human clicks on programs paying in it
    signups: int = 0
    sales: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # currency -> cents
    earned: dict[str, int] = field(default_factory=dict)

    @property
    def excluded(self) -> int:
        return self.raw - self.human

    @property
    def conversions(self) -> int:
        return self.signups + self.sales

    @property
    def conversion_ratio(self) -> Decimal | None:
        """Signups and sales per human click, unrounded, for a page to round once to what it shows (rounding the
        two-place rate again would show 21.0% for 4 in 19, 21.0526%)."""
        if not self.human:
            return None
        return Decimal(self.conversions) / self.human

    @property
    def conversion_rate(self) -> Decimal | None:
        """Signups and sales per 100 human clicks; None without human clicks."""
        if not self.human:
            return None
        return (Decimal(self.conversions * 100) / self.human).quantize(RATE_PLACES, ROUND_HALF_EVEN)

    def epc(self, currency: str) -> Decimal | None:
        """Live commissions earned in a currency per human click on the programs that pay in it, in major units;
        None without such clicks."""
        clicks = self.human_in.get(currency, 0)
        if not clicks:
            return None
        return (to_decimal(self.earned.get(currency, 0), currency) / clicks).quantize(EPC_PLACES, ROUND_HALF_EVEN)

    @property
    def clicks(self) -> ClickCounts:
        return ClickCounts(self.raw, self.human, self.unique, dict(self.human_in))

    @property
    def currencies(self) -> list[str]:
        return sorted(self.revenue.keys() | self.earned.keys())

    def add_clicks(self, counts: ClickCounts) -> None:
        self.raw, self.human, self.unique = (
            self.raw + counts.raw,
            self.human + counts.human,
            self.unique + counts.unique,
        )
        for currency, count in counts.human_in.items():
            self.human_in[currency] = self.human_in.get(currency, 0) + count

    def add_conversions(self, kind: str, currency: str, count: int, cents: int) -> None:
        if kind == ConversionType.SIGNUP:
            self.signups += count
        elif kind == ConversionType.SALE:
            self.sales += count
            self.revenue[currency] = self.revenue.get(currency, 0) + cents
        else:
            self.revenue[currency] = self.revenue.get(currency, 0) - cents

    def add_earned(self, currency: str, cents: int) -> None:
        self.earned[currency] = self.earned.get(currency, 0) + cents


@dataclass
class Row:
    key: object  # the dimension's value; None for clicks and conversions without one
    label: str
    figures: Figures
    detail: str = ""


@dataclass(frozen=True)
class Breakdown:
    name: str
    title: str
    rollup: str  # the rollup dimension its clicks come from
    staff_only: bool = False
    has_none: bool = True  # clicks without a value are shown as one "none" row


BREAKDOWNS: dict[str, Breakdown] = {
    b.name: b
    for b in (
        Breakdown("day", "Day", "total", has_none=False),
        Breakdown("link", "Link", "link", has_none=False),
        Breakdown("campaign", "Campaign", "link", has_none=False),
        *(Breakdown(f"sub{n}", f"Sub-ID {n}", f"sub{n}") for n in range(1, 6)),
        Breakdown("country", "Country", "country"),
        Breakdown("device", "Device", "device"),
        Breakdown("browser", "Browser", "browser"),
        Breakdown("referrer", "Referrer", "referrer"),
        Breakdown("excluded", "Why clicks were excluded", "excluded", has_none=False),
        Breakdown("program", "Program", "total", has_none=False),
        Breakdown("affiliate", "Affiliate", "total", staff_only=True, has_none=False),
    )
}
NONE_LABELS = {"link": "(no click)", "campaign": "(no campaign)", "referrer": "(none or direct)"}
REASON_LABELS = {
    "bot:empty_user_agent": "Bot: no user agent",
    "bot:head_request": "Bot: HEAD request",
    "bot:prefetch": "Bot: prefetch",
    "bot:link_preview": "Bot: link preview",
    "bot:headless_browser": "Bot: headless browser",
    "bot:known_bot": "Bot: known bot",
    "bot:automation_tool": "Bot: automation tool",
    "bot:known_crawler": "Bot: known crawler",
    "rule:affiliate_inactive": "Affiliate not active",
    "rule:affiliate_not_enrolled": "Affiliate not enrolled in the program",
}


def reason_label(reason: str) -> str:
    """A reader's name for an exclusion reason ("rule:click_flooding" -> "Fraud rule: click flooding")."""
    if reason in REASON_LABELS:
        return REASON_LABELS[reason]
    kind, _, name = reason.partition(":")
    return f"{'Bot' if kind == 'bot' else 'Fraud rule'}: {name.replace('_', ' ')}"


@dataclass
class Overview:
    total: Figures
    commissions: dict[str, dict[str, int]]  # status -> currency -> cents
    days: list[Row]  # every day of the period, in order
    programs: list[Row]
    affiliates: list[Row]  # most conversions first


@dataclass(frozen=True)
class RuleCount:
    rule: str
    action: str  # what the rule did: flag or reject
    conversions: int
    awaiting_review: int  # of those, still flagged


@dataclass(frozen=True)
class PayoutCount:
    status: str
    currency: str
    payouts: int
    amount_cents: int


def row_currencies(rows: list[Row]) -> list[str]:
    """Every currency with money in any of the rows."""
    return sorted({currency for row in rows for currency in row.figures.currencies})
