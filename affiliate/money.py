"""Money as integer minor units: parsing what people type and formatting what they read."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision

# The currencies a program may be run in (ISO 4217).
CURRENCIES = (
    "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK",
    "PLN", "CZK", "HUF", "JPY", "SGD", "HKD", "INR", "BRL", "MXN", "ZAR",
)  # fmt: skip

MAX_CENTS = 10**13  # 100 billion in a two-decimal currency: beyond any real payout


class InvalidAmount(ValueError):
    """Text that is not an amount of money in the given currency."""


def minor_digits(currency: str) -> int:
    return get_currency_precision(currency)


def parse_amount(text: str, currency: str) -> int:
    """Parse "1234.50" in ``currency`` into minor units; never through a float.

    More decimal places than the currency has is an error, not a silent rounding.
    """
    text = (text or "").strip().replace(",", "")
    if not text or len(text) > 32:
        raise InvalidAmount("Enter an amount such as 50.00.")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount("Enter an amount such as 50.00.") from None
    if not value.is_finite():
        raise InvalidAmount("Enter an amount such as 50.00.")
    digits = minor_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(f"{currency} amounts have at most {digits} decimal places.")
    cents = int(scaled)
    if cents < 0:
        raise InvalidAmount("The amount cannot be negative.")
    if cents > MAX_CENTS:
        raise InvalidAmount("The amount is too large.")
    return cents


def to_decimal(cents: int, currency: str) -> Decimal:
    return Decimal(cents).scaleb(-minor_digits(currency))


def format_amount(cents: int, currency: str) -> str:
    """Format minor units for reading, e.g. 123450, "USD" -> "$1,234.50"."""
    return format_currency(to_decimal(cents, currency), currency, locale="en_US")


def plain_amount(cents: int, currency: str) -> str:
    """Format minor units for a form field, e.g. 5000, "USD" -> "50.00"."""
    return f"{to_decimal(cents, currency):f}"
