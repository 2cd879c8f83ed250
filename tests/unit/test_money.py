"""Money parsing and formatting: exact integer minor units, never a float or a silent rounding."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from affiliate.money import CURRENCIES, MAX_CENTS, InvalidAmount, format_amount, parse_amount, plain_amount

FAST = settings(max_examples=300, deadline=None)
ZERO_DECIMAL = {"JPY"}
THREE_DECIMAL = {"KWD", "BHD", "OMR", "JOD"}  # ISO 4217 dinars: 1,000 fils


@pytest.mark.parametrize(
    ("text", "currency", "cents"),
    [
        ("50", "USD", 5000),
        ("50.00", "USD", 5000),
        ("50.5", "EUR", 5050),
        ("1,234.56", "USD", 123456),
        ("0.5", "USD", 50),
        ("0.01", "GBP", 1),
        ("0", "USD", 0),
        (" 12.30 ", "USD", 1230),
        ("100", "JPY", 100),
        ("1,000", "JPY", 1000),
        ("12,345,678.90", "USD", 1234567890),
        ("100.0", "JPY", 100),
        ("10.500", "USD", 1050),
        ("100.000", "JPY", 100),
        ("100000000000.00", "USD", MAX_CENTS),
        (str(MAX_CENTS), "JPY", MAX_CENTS),
    ],
)
def test_amount_is_parsed_to_minor_units(text, currency, cents):
    assert parse_amount(text, currency) == cents


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "1e-2",
        "1.5e1",
        "+5",
        "-0",
        "-0.00",
        "1_000",
        "\u0661\u0662\u0663",
        "\uff15\uff10",
        "5O.00",
        # A decimal comma is refused, not read as thousands: "0,50" was taken for 50.00.
        "0,50",
        "9,9",
        "1,5",
        ",,,7",
        "50,00",
        "1,23,456",
        "1,2345",
        "12,",
        ",5",
        "1,000,00",
    ],
)
def test_only_plain_ascii_decimal_notation_is_accepted(text):
    with pytest.raises(InvalidAmount):
        parse_amount(text, "USD")


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("100.5", "JPY"),
        ("0.1", "JPY"),
        ("0.001", "USD"),
        ("1.005", "USD"),
        ("19.999", "EUR"),
        ("1e-3", "USD"),
        ("1.0000000000000000000000000001", "USD"),
        ("0.0000000000000000000000000000001", "USD"),
        ("1e-999999999", "USD"),
        ("1e-99999", "JPY"),
    ],
)
def test_too_many_decimals_is_refused_not_rounded(text, currency):
    with pytest.raises(InvalidAmount):
        parse_amount(text, currency)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-1",
        "-0.01",
        "NaN",
        "nan",
        "sNaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "abc",
        "$50",
        "50 USD",
        "0x10",
        "1/2",
        "1.2.3",
        "--1",
        "1" * 33,
        "100000000000.01",
        str(MAX_CENTS + 1),
        "1.00000000001e11",
        "1e30",
        "1e999999",
        "9e999999999",
    ],
)
def test_bad_amount_is_refused(text):
    with pytest.raises(InvalidAmount):
        parse_amount(text, "USD")


def test_amount_just_above_the_cap_is_refused_in_a_zero_decimal_currency():
    assert parse_amount(str(MAX_CENTS), "JPY") == MAX_CENTS
    with pytest.raises(InvalidAmount):
        parse_amount(str(MAX_CENTS + 1), "JPY")


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (123450, "USD", "$1,234.50"),
        (0, "USD", "$0.00"),
        (5, "EUR", "€0.05"),
        (1234, "JPY", "¥1,234"),
    ],
)
def test_amount_is_formatted_for_reading(cents, currency, text):
    assert format_amount(cents, currency) == text


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (5000, "USD", "50.00"),
        (1, "USD", "0.01"),
        (0, "EUR", "0.00"),
        (100, "JPY", "100"),
        (MAX_CENTS, "USD", "100000000000.00"),
    ],
)
def test_amount_is_formatted_for_a_form_field(cents, currency, text):
    assert plain_amount(cents, currency) == text


@FAST
@given(st.integers(0, MAX_CENTS), st.sampled_from(CURRENCIES))
def test_plain_amount_parses_back_to_the_same_cents(cents, currency):
    assert parse_amount(plain_amount(cents, currency), currency) == cents


@FAST
@given(st.integers(0, MAX_CENTS), st.sampled_from(CURRENCIES), st.integers(0, 30), st.sampled_from("123456789"))
@example(100, "USD", 25, "1")
def test_one_more_decimal_digit_than_the_currency_has_is_refused(cents, currency, zeros, digit):
    plain = plain_amount(cents, currency)
    text = plain + ("" if "." in plain else ".") + "0" * zeros + digit
    assume(len(text) <= 32)
    with pytest.raises(InvalidAmount):
        parse_amount(text, currency)


def exact_cents(text: str, currency: str) -> int | None:
    """Reference answer in exact fractions, or None where the documented rules refuse the text."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text.replace(",", "")):
        return None
    if "," in text and not re.fullmatch(r"[1-9][0-9]{0,2}(,[0-9]{3})+(\.[0-9]+)?", text):
        return None  # commas only between groups of three: anything else may be a decimal comma
    if "," in text and "." not in text and currency in THREE_DECIMAL:
        return None  # "12,500" may be twelve and a half
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    value = Fraction(text.replace(",", "")) * 10**digits
    if value.denominator != 1 or value > MAX_CENTS:
        return None
    return int(value)


NUMBERS = st.from_regex(r"\A[+-]?[0-9]{1,3}(,?[0-9]{3}){0,4}(\.[0-9]{0,18})?([eE][+-]?[0-9]{1,2})?\Z")


@FAST
@given(NUMBERS, st.sampled_from(CURRENCIES))
@example("1.0000000000000000000000000001", "USD")
@example("12.3400000000000000", "EUR")
def test_numbers_are_parsed_exactly_or_refused(text, currency):
    expected = exact_cents(text, currency)
    if expected is None:
        with pytest.raises(InvalidAmount):
            parse_amount(text, currency)
    else:
        assert parse_amount(text, currency) == expected


@FAST
@given(st.text() | st.text(st.sampled_from("0123456789.,-+eE_ nNaIifty")), st.sampled_from(CURRENCIES))
@example("1e999999", "USD")
@example("9e999999999", "JPY")
def test_any_text_is_an_amount_or_invalid_amount(text, currency):
    try:
        cents = parse_amount(text, currency)
    except InvalidAmount:
        return
    assert type(cents) is int and 0 <= cents <= MAX_CENTS


def test_dinars_are_read_and_written_in_fils():
    assert {"KWD", "BHD"} <= set(CURRENCIES), "programs and the conversion API accept them"
    assert parse_amount("1.5", "KWD") == 1_500 and parse_amount("0.001", "BHD") == 1
    assert parse_amount("12,500.000", "KWD") == 12_500_000, "a dot says which the comma is"
    with pytest.raises(InvalidAmount, match="dot before the decimals"):
        parse_amount("12,500", "KWD")  # twelve and a half as often as twelve thousand five hundred
    assert format_amount(60_125, "KWD") == "KWD60.125" and plain_amount(5_000, "BHD") == "5.000"
    with pytest.raises(InvalidAmount, match="at most 3 decimal places"):
        parse_amount("1.0005", "KWD")
