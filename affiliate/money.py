"""Money as integer minor units: parsing what people type and formatting what they read."""

from __future__ import annotations

import re
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision

# The currencies a program may be run in (ISO 4217). Minor units follow ISO 4217 through Babel: JPY has
# none, the dinars (KWD, BHD, OMR, JOD) have three, so every amount is read and written in their fils.
CURRENCIES = (
    "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK",
    "PLN", "CZK", "HUF", "JPY", "SGD", "HKD", "INR", "BRL", "MXN", "ZAR",
    "KWD", "BHD", "OMR", "JOD",
)  # fmt: skip

# Commas only between groups of three digits after a first group that does not start with 0 ("1,234.50"):
# "0,50", "9,9" or "0,500" is a decimal comma, which would otherwise be read as 50.00, 99.00 or 500.00, and is
# refused rather than guessed.
_AMOUNT = re.compile(r"((?:[1-9][0-9]{0,2}(?:,[0-9]{3})+)|[0-9]{1,16})(?:\.([0-9]{1,18}))?", re.ASCII)
MAX_CENTS = 10**13  # 100 billion in a two-decimal currency: beyond any real payout


class InvalidAmount(ValueError):
    """Text that is not an amount of money in the given currency."""


def minor_digits(currency: str) -> int:
    return get_currency_precision(currency)


def parse_amount(text: str, currency: str) -> int:
    """Parse "1,234.50" in ``currency`` into minor units with integer arithmetic only.

    Only plain decimal notation is accepted (no signs, exponents or NaN). More decimal
    places than the currency has is an error rather than a silent rounding, except
    trailing zeros ("10.500" is 10.50).
    """
    match = _AMOUNT.fullmatch((text or "").strip())
    if match is None:
        raise InvalidAmount("Enter an amount such as 50.00 (a dot before the decimals; commas only between thousands).")
    digits = minor_digits(currency)
    if digits == 3 and "," in match.group(1) and match.group(2) is None:
        # "12,500" is twelve and a half written with a decimal comma as often as twelve thousand five hundred.
        raise InvalidAmount(f"Write {currency} amounts with a dot before the decimals (12,500.000 or 12.5).")
    whole, fraction = match.group(1).replace(",", ""), (match.group(2) or "").rstrip("0")
    if len(whole) > 16:
        raise InvalidAmount("The amount is too large.")
    if len(fraction) > digits:
        raise InvalidAmount(f"{currency} amounts have at most {digits} decimal places.")
    cents = int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0")
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
