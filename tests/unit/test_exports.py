"""CSV exports: formulas neutralised in text cells only, amounts plain and exact, nothing dropped."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from affiliate.services.exports import FORMULA_TRIGGERS, ExportError, PayoutLine, neutralise, payout_file, write_csv

FAST = settings(max_examples=400, deadline=None)


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("https://evil.test")', '\'=HYPERLINK("https://evil.test")'),
        ("+44 20", "'+44 20"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Alice", "Alice"),
        ('x;"=1+1', "x;'\"=1+1"),  # a ;-split leaves the quote at the piece's start: still neutralised
        ('"@SUM(A1)', "'\"@SUM(A1)"),
        ("a=b", "a=b"),
        (" =1", " =1"),
        ("", ""),
    ],
)
def test_text_that_a_spreadsheet_would_run_is_neutralised(text, cell):
    assert neutralise(text) == cell


@FAST
@given(st.text())
@example("=cmd|' /C calc'!A0")
@example("\r\n=1")
def test_no_text_cell_reaches_a_spreadsheet_as_a_formula(text):
    (row,) = parse(write_csv([[text]]))
    assert not row[0].startswith(FORMULA_TRIGGERS)
    assert row[0].replace("'", "") == text.replace("'", ""), "the value survives; only single quotes are added"
    assert row[0] == neutralise(text)


@FAST
@given(st.integers(min_value=-(10**13), max_value=10**13), st.sampled_from(["USD", "JPY", "EUR"]))
def test_amounts_stay_plain_numbers_that_parse_back_exactly(cents, currency):
    line = PayoutLine(1, 1, "x", "paypal", "a@example.com", cents, currency)
    (row,) = parse(write_csv([[line.amount, cents]]))
    assert Decimal(row[0]) == line.amount and int(row[1]) == cents
    assert not row[0].startswith("'") and not row[1].startswith("'"), "a negative amount is a number, not a formula"


@FAST
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=10**10), st.text(min_size=1, max_size=40)), max_size=30))
def test_a_payout_file_sums_to_its_payouts(payouts):
    lines = [
        PayoutLine(i, 7, name, "wise", f"p{i}@example.com", cents, "USD") for i, (cents, name) in enumerate(payouts, 1)
    ]
    if not lines:
        with pytest.raises(ExportError):
            payout_file("wise", lines)
        return
    table = parse(payout_file("wise", lines))
    assert len(table) == len(lines) + 1
    assert sum(Decimal(row[5]) for row in table[1:]) * 100 == sum(cents for cents, _ in payouts)
    assert [row[0] for row in table[1:]] == [neutralise(name) for _, name in payouts]


def test_each_file_takes_only_its_method_and_refuses_unusable_details():
    lines = [
        PayoutLine(1, 3, "Alice", "paypal", "alice@example.com", 1234, "USD"),
        PayoutLine(2, 3, "Carol Ann Cruz", "bank", "Carol Ann Cruz GB82WEST12345698765432", 500, "USD"),
        PayoutLine(3, 3, "Yuki", "paypal", "yuki@example.jp", 700, "JPY"),
    ]
    assert parse(payout_file("paypal", lines)) == [
        ["alice@example.com", "12.34", "USD", "CT-3-1", "Clicktrail payout CT-3-1", "PAYPAL"],
        ["yuki@example.jp", "700", "JPY", "CT-3-3", "Clicktrail payout CT-3-3", "PAYPAL"],
    ]
    assert parse(payout_file("bank", lines))[1] == ["Carol Ann Cruz", "GB82WEST12345698765432", "5.00", "USD", "CT-3-2"]
    with pytest.raises(ExportError, match="for the Wise batch file"):
        payout_file("wise", lines)
    broken = [*lines, PayoutLine(4, 3, "Dan", "paypal", "", 100, "USD")]
    with pytest.raises(ExportError, match=r"#4 \(Dan\)"):
        payout_file("paypal", broken)


@pytest.mark.parametrize("address", ["-sales@example.com", "+shop@example.com", "=team@example.com"])
def test_a_payout_address_a_spreadsheet_would_run_is_refused_never_altered(address):
    """A valid address starting like a formula would have to be written with a quote before it, and the provider
    would be told to pay an address that is not the affiliate's: the file names the payout instead."""
    lines = [PayoutLine(1, 3, "Alice", "paypal", "alice@example.com", 1234, "USD")]
    lines.append(PayoutLine(2, 3, "Sam", "paypal", address, 500, "USD"))
    with pytest.raises(ExportError, match=r"#2 \(Sam\)"):
        payout_file("paypal", lines)
    lines[1] = PayoutLine(2, 3, "Sam", "wise", address, 500, "USD")
    with pytest.raises(ExportError, match=r"#2 \(Sam\)"):
        payout_file("wise", lines)


def test_floats_never_reach_a_money_file():
    with pytest.raises(TypeError):
        write_csv([[12.34]])
