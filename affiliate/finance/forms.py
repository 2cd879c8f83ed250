"""Forms for payout batches."""

from __future__ import annotations

from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from affiliate.forms import Form


class BuildBatchForm(Form):
    currency = SelectField("Currency", validators=[DataRequired(message="Choose the currency to pay.")])


class MarkPaidForm(Form):
    reference = StringField(
        "Reference from PayPal, Wise or the bank",
        validators=[DataRequired(message="Enter the payment's reference from PayPal, Wise or the bank."),
                    Length(max=255)],
    )  # fmt: skip


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
    confirm_repeat = BooleanField("I have checked that the earlier file was not uploaded, or will not be: "
                                  "uploading both pays everyone in them twice")  # fmt: skip
