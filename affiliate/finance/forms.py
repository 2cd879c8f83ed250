"""Forms for payout batches, bonuses and clawbacks."""

from __future__ import annotations

from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from affiliate.forms import Form
from affiliate.models import AdjustmentKind
from affiliate.money import InvalidAmount, parse_amount
from affiliate.params import parse_id
from affiliate.services.adjustments import REASON_MAX
from affiliate.validators import options


class BuildBatchForm(Form):
    currency = SelectField("Currency", validators=[DataRequired(message="Choose the currency to pay.")])


class MarkPaidForm(Form):
    reference = StringField(
        "Reference from PayPal, Wise or the bank",
        validators=[
            DataRequired(message="Enter the payment's reference from PayPal, Wise or the bank."),
            Length(max=255),
        ],
    )


class MarkManyPaidForm(Form):
    """The ticked payouts of a batch, paid in one go (a PayPal or Wise batch, one bank run): one reference for all;
    the ids are read from the form's ``payouts`` boxes."""

    reference = StringField(
        "Reference of the payment run (PayPal, Wise or the bank)",
        validators=[
            DataRequired(message="Enter the payment run's reference from PayPal, Wise or the bank."),
            Length(max=255),
        ],
    )


class MarkFailedForm(Form):
    reason = TextAreaField(
        "Why it failed (shown to the affiliate)",
        validators=[DataRequired(message="Say why the payout failed: the affiliate sees it."), Length(max=1000)],
    )


class CancelBatchForm(Form):
    reason = TextAreaField(
        "Why cancel it (kept in the audit log)",
        validators=[DataRequired(message="Say why the batch is cancelled."), Length(max=1000)],
    )


class RepeatExportForm(Form):
    # Only read when the batch already had a file of the format: the person confirms they know.
    confirm_repeat = BooleanField(
        "I have checked that the earlier file was not uploaded, or will not be: "
        "uploading both pays everyone in them twice"
    )


class AdjustmentForm(Form):
    """A bonus or clawback for one affiliate; the amount is read in the chosen program's currency."""

    kind = SelectField(
        "Bonus or clawback",
        choices=options(
            [
                (AdjustmentKind.BONUS.value, "Bonus: adds to what the affiliate is owed"),
                (AdjustmentKind.CLAWBACK.value, "Clawback: takes from what the affiliate is owed"),
            ]
        ),
    )
    program = SelectField(
        "Program",
        validate_choice=False,  # validate_program says it once, in words
        validators=[DataRequired(message="Choose the program it is for.")],
        description="The amount is in this program's currency and is paid or recovered with its payouts.",
    )
    amount = StringField(
        "Amount",
        validators=[DataRequired(message="Enter the amount."), Length(max=32)],
        description="Always positive, in the program's currency: 50.00 in USD, 5000 in JPY, 12.125 in KWD. "
        "Choose Clawback to take money back.",
    )
    reason = TextAreaField(
        "Reason (shown to the affiliate)",
        validators=[DataRequired(message="Say why: the affiliate sees the reason."), Length(max=REASON_MAX)],
    )

    def __init__(self, programs: list[tuple[int, str, str]], *args, **kwargs) -> None:
        """``programs`` as (id, name, currency)."""
        super().__init__(*args, **kwargs)
        self.currencies = {program_id: currency for program_id, _, currency in programs}
        self.program.choices = options(
            [("", "Choose a program")]
            + [(str(program_id), f"{name} ({currency})") for program_id, name, currency in programs]
        )
        self.program_id: int | None = None
        self.amount_cents = 0

    def validate_program(self, field) -> None:
        program_id = parse_id(field.data)
        if program_id not in self.currencies:
            raise ValidationError("Choose one of the programs.")
        self.program_id = program_id

    def validate_amount(self, field) -> None:
        currency = self.currencies.get(self.program_id)
        if currency is None:
            return  # the program's own error says what to fix first
        try:
            cents = parse_amount(field.data, currency)
        except InvalidAmount as error:
            raise ValidationError(str(error)) from None
        if cents <= 0:
            raise ValidationError("Enter an amount more than zero.")
        self.amount_cents = cents


class RejectAdjustmentForm(Form):
    note = TextAreaField(
        "Why reject it (kept in the audit log)",
        validators=[DataRequired(message="Say why the adjustment is rejected."), Length(max=REASON_MAX)],
    )


class ApproveAdjustmentForm(Form):
    """A button: only the CSRF token."""
