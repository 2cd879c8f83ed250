"""How the portal writes numbers, money and times for people: one path, through Babel, in one locale.

Templates use these as filters (``{{ n | count }}``, ``{{ cents | money(currency) }}``, ``{{ at | when }}``),
never ``strftime`` or ``%`` formatting, so that a figure reads the same on every page. Times are stored in UTC
and shown in UTC with the zone named, because staff and affiliates sit in different zones and a payout run is
judged against UTC dates.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent, get_group_symbol, get_minus_sign_symbol

from affiliate.money import format_amount

LOCALE = "en_US"
NOTHING = "—"  # a figure that does not exist (no clicks, so no rate), as against a zero that does


# The locale's symbols, read from Babel once: a report page writes hundreds of counts (every bar of its charts
# has one), and Babel's general number formatting costs a quarter of a millisecond each.
GROUP, MINUS = get_group_symbol(LOCALE), get_minus_sign_symbol(LOCALE)


def count(value: int | Decimal | None) -> str:
    """A whole number with thousands separators: 12345 -> "12,345"."""
    if value is None:
        return NOTHING
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)  # a SUM on PostgreSQL
    if isinstance(value, int):
        digits = f"{abs(value):,}".replace(",", GROUP)
        return MINUS + digits if value < 0 else digits
    return format_decimal(value, locale=LOCALE)


def percent(value: float | Decimal | None, digits: int = 1) -> str:
    """A ratio as a percentage: 0.0523 -> "5.2%"; None (nothing to divide by) -> "—"."""
    if value is None:
        return NOTHING
    return format_percent(value, format="#,##0." + "0" * digits + "%" if digits else "#,##0%", locale=LOCALE)


def money(cents: int | None, currency: str) -> str:
    """Minor units in their currency: 123450, "USD" -> "$1,234.50". Zero is "$0.00", never a dash."""
    return NOTHING if cents is None else format_amount(cents, currency)


def rate(value: Decimal | float | None, currency: str) -> str:
    """An amount per click or per sale, which may fall below a cent: "$0.157", "$1.20"; None -> "—"."""
    if value is None:
        return NOTHING
    return format_currency(value, currency, format="¤#,##0.00##", currency_digits=False, locale=LOCALE)


def day(value: date | datetime | None) -> str:
    """A calendar day: "Dec 5, 2026"."""
    return NOTHING if value is None else format_date(value, format="medium", locale=LOCALE)


def when(value: datetime | None, seconds: bool = False) -> str:
    """A moment, in UTC and saying so: "Dec 5, 2026, 14:03 UTC"."""
    if value is None:
        return NOTHING
    pattern = "MMM d, y, HH:mm:ss" if seconds else "MMM d, y, HH:mm"
    return format_datetime(value, pattern, tzinfo=None, locale=LOCALE) + " UTC"


FILTERS = {"count": count, "percent": percent, "money": money, "rate": rate, "day": day, "when": when}
