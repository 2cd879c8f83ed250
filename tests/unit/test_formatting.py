"""The one formatting path: what a person reads for a figure, an amount and a time."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from affiliate import formatting


def test_counts_have_thousands_separators():
    assert formatting.count(1234567) == "1,234,567"
    assert formatting.count(0) == "0"


def test_counts_read_as_babel_writes_them_whatever_the_type():
    """The quick path for whole numbers gives what Babel's number formatting gives, negatives and sums included."""
    from babel.numbers import format_decimal

    for value in (0, 7, 999, 1000, -1000, 1234567, -98765432, 10**15):
        assert formatting.count(value) == format_decimal(value, locale=formatting.LOCALE), value
    assert formatting.count(Decimal("12345")) == "12,345"  # a SUM on PostgreSQL
    assert formatting.count(Decimal("2.5")) == "2.5"
    assert formatting.count(None) == "—"


def test_a_missing_figure_is_a_dash_and_a_zero_amount_is_money():
    assert formatting.money(0, "USD") == "$0.00"
    assert formatting.money(None, "USD") == "—"
    assert formatting.percent(None) == "—"
    assert formatting.rate(None, "USD") == "—"


def test_amounts_follow_the_currency():
    assert formatting.money(123450, "USD") == "$1,234.50"
    assert formatting.money(1500, "JPY") == "¥1,500"
    assert formatting.money(1234, "KWD") == "KWD1.234"


def test_rates_per_click_keep_fractions_of_a_cent_and_the_symbol():
    assert formatting.rate(Decimal("0.157"), "USD") == "$0.157"
    assert formatting.rate(Decimal("1.2"), "EUR") == "€1.20"


def test_percentages():
    assert formatting.percent(Decimal("0.05234")) == "5.2%"
    assert formatting.percent(Decimal("0.5"), 0) == "50%"


def test_times_are_shown_in_utc_and_say_so():
    assert formatting.when(datetime(2026, 12, 5, 14, 3, 7)) == "Dec 5, 2026, 14:03 UTC"
    assert formatting.when(datetime(2026, 12, 5, 14, 3, 7), seconds=True) == "Dec 5, 2026, 14:03:07 UTC"
    assert formatting.day(date(2026, 1, 31)) == "Jan 31, 2026"
