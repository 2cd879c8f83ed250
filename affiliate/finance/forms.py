"""Forms for payout batches."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class BuildBatchForm(FlaskForm):
    currency = SelectField("Currency", validators=[DataRequired(message="Choose the currency to pay.")])


class MarkPaidForm(FlaskForm):
    reference = StringField(
        "Reference from PayPal, Wise or the bank",
        validators=[DataRequired(message="Enter the payment's reference from PayPal, Wise or the bank."),
                    Length(max=255)],
    )  # fmt: skip


class MarkFailedForm(FlaskForm):
    reason = TextAreaField(
        "Why it failed (shown to the affiliate)",
        validators=[DataRequired(message="Say why the payout failed: the affiliate sees it."), Length(max=1000)],
    )


class CancelBatchForm(FlaskForm):
    reason = TextAreaField(
        "Why cancel it (kept in the audit log)",
        validators=[DataRequired(message="Say why the batch is cancelled."), Length(max=1000)],
    )


class RepeatExportForm(FlaskForm):
    # Only read when the batch already had a file of the format: the person confirms they know.
    confirm_repeat = BooleanField("I have checked that the earlier file was not uploaded, or will not be: "
                                  "uploading both pays everyone in them twice")  # fmt: skip
