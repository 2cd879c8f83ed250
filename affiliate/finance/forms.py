"""Forms for payout batches."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
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
