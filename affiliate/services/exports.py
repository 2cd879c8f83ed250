"""CSV files people open in spreadsheets or upload to payment providers, safe from formula injection.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets, so such cells get a leading single quote (OWASP's
advice). Every text cell is also written in double quotes, so a ``;`` or tab inside it stays inside it when a
spreadsheet splits the file on ``;`` or tab instead of ``,``. Opened that way, though, the ``,`` between cells is
not a separator and a quote after it is not at a cell's start, so a later text cell can still be cut at its own
``;`` or tab; every piece that would start after one of those separators (or a line break) is neutralised too:
``Bob;=2+5;x`` is written ``"Bob;'=2+5;x"``. Amounts are ``int`` or ``Decimal`` values and are written as plain
numbers, never quoted or prefixed, so ``-12.50`` stays a number and a column of amounts sums to the ledger.

Payout files (one per provider, each holding the batch's payouts of that method):

- ``paypal``: PayPal Payouts web upload, no header row: recipient email, amount, currency,
  customer id (our reference, under 30 characters, no spaces), note to recipient, wallet ``PAYPAL``.
- ``wise``: Wise batch transfer to an email address, with Wise's header names; ``amountCurrency``
  ``target`` so the affiliate receives the exact amount and the fees are ours.
- ``bank``: a generic bank file: ``beneficiary_name, iban, amount, currency, reference``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from affiliate.money import to_decimal

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Where a spreadsheet may start a cell: the text's start, or after any separator it might split on, quotes that
# such a split leaves at a piece's start included (x;"=1+1 is written x;'"=1+1).
_CELL_STARTS = re.compile(r"(?:^|(?<=[,;\t\r\n]))(?=\"*[=+\-@\t\r])")

Cell = str | int | Decimal | None


def neutralise(text: str) -> str:
    """Prefix a single quote to text a spreadsheet would otherwise run as a formula, wherever it could start a cell."""
    return _CELL_STARTS.sub("'", text)


def cell(value: Cell) -> str:
    """One cell as written: text neutralised and in double quotes, numbers plain, None empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + neutralise(value).replace('"', '""') + '"'
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        # Money is never a float; anything else is a programming error, not data.
        raise TypeError(f"CSV cells are text, int or Decimal, not {type(value).__name__}")
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def write_csv(rows: Iterable[Sequence[Cell]], header: Sequence[str] | None = None) -> str:
    """Render rows as RFC 4180 CSV (CRLF line ends), header first when given."""
    lines = [] if header is None else [",".join(cell(name) for name in header)]
    lines.extend(",".join(cell(value) for value in row) for row in rows)
    return "".join(line + "\r\n" for line in lines)


@dataclass(frozen=True)
class PayoutLine:
    """One payout as it goes into a provider file; ``destination`` is the snapshot taken when the batch was built."""

    payout_id: int
    batch_id: int
    affiliate_name: str
    method: str
    destination: str
    amount_cents: int
    currency: str

    @property
    def reference(self) -> str:
        return f"CT-{self.batch_id}-{self.payout_id}"

    @property
    def amount(self) -> Decimal:
        return to_decimal(self.amount_cents, self.currency)


class ExportError(ValueError):
    """A payout file that cannot be made; the message says why and which payouts."""


@dataclass(frozen=True)
class PayoutFormat:
    label: str
    method: str  # only payouts by this method go into the file
    header: tuple[str, ...] | None
    row: Callable[[PayoutLine], list[Cell]]
    usable: Callable[[PayoutLine], bool]


def _paypal_row(line: PayoutLine) -> list[Cell]:
    return [
        line.destination,
        line.amount,
        line.currency,
        line.reference,
        f"Clicktrail payout {line.reference}",
        "PAYPAL",
    ]


def _wise_row(line: PayoutLine) -> list[Cell]:
    return [
        line.affiliate_name,
        line.destination,
        line.reference,
        "PERSON",
        "target",
        line.amount,
        line.currency,
        line.currency,
        "EMAIL",
    ]


def _bank_row(line: PayoutLine) -> list[Cell]:
    name, iban = _name_and_iban(line.destination)
    return [name, iban, line.amount, line.currency, line.reference]


def _has_email(line: PayoutLine) -> bool:
    """An address the provider can be given exactly: one a spreadsheet would read as a formula (``-sales@...`` is a
    valid address) would have to be written with a quote before it, and the provider would pay another address;
    the payout details form refuses such addresses, and a file never carries one altered."""
    local, at, domain = line.destination.partition("@")
    return (
        bool(local and at and "." in domain)
        and not any(ch.isspace() for ch in line.destination)
        and neutralise(line.destination) == line.destination
    )


def _has_iban(line: PayoutLine) -> bool:
    name, iban = _name_and_iban(line.destination)
    return bool(name) and 15 <= len(iban) <= 34 and iban.isascii() and iban.isalnum()


def _name_and_iban(destination: str) -> tuple[str, str]:
    """Split the bank snapshot "<account holder> <IBAN>"; IBANs are stored without spaces."""
    name, _, iban = destination.strip().rpartition(" ")
    return name.strip(), iban


WISE_HEADER = ("name", "recipientEmail", "paymentReference", "receiverType", "amountCurrency", "amount",
               "sourceCurrency", "targetCurrency", "type")  # fmt: skip
BANK_HEADER = ("beneficiary_name", "iban", "amount", "currency", "reference")
FORMATS: dict[str, PayoutFormat] = {
    "paypal": PayoutFormat("PayPal Payouts", "paypal", None, _paypal_row, _has_email),
    "wise": PayoutFormat("Wise batch", "wise", WISE_HEADER, _wise_row, _has_email),
    "bank": PayoutFormat("Bank transfer", "bank", BANK_HEADER, _bank_row, _has_iban),
}


def payout_file(format_name: str, lines: Sequence[PayoutLine]) -> str:
    """The provider file for the lines paid by that format's method; refuse rather than drop a payout silently."""
    fmt = FORMATS[format_name]
    mine = [line for line in lines if line.method == fmt.method]
    if not mine:
        raise ExportError(f"No payout awaiting payment in this batch is for the {fmt.label} file.")
    unusable = [line for line in mine if not fmt.usable(line)]
    if unusable:
        named = ", ".join(f"#{line.payout_id} ({line.affiliate_name})" for line in unusable)
        raise ExportError(
            f"These payouts lack the details the {fmt.label} file needs: {named}. Mark them failed, "
            "then export the rest."
        )
    return write_csv((fmt.row(line) for line in mine), fmt.header)
