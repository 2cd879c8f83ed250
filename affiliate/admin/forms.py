"""Forms for staff pages."""

from __future__ import annotations

from flask import current_app
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    URLField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from affiliate.forms import Form
from affiliate.models import AttributionModel, EnrollmentPolicy, ProgramStatus
from affiliate.money import CURRENCIES, InvalidAmount, parse_amount
from affiliate.services.api_keys import SCOPES, TRACKING_SCOPES
from affiliate.urls import LOOPBACK_HOSTS, InvalidUrl, host_of, parse_host_list
from affiliate.validators import host_list, https_destination, options


class DecisionForm(Form):
    action = SelectField(
        "Decision",
        choices=options(
            [("approve", "Approve"), ("reject", "Reject"), ("suspend", "Suspend"), ("reactivate", "Reactivate")]
        ),
    )
    reason = TextAreaField("Reason (shown to the affiliate)", validators=[Optional(), Length(max=1000)])


class RecruiterForm(Form):
    code = StringField(
        "Recruiter's referral code",
        validators=[Optional(), Length(max=32)],
        description="Another affiliate's referral code, shown on their page; leave empty for nobody. It applies to "
        "conversions evaluated from now on: commissions already accrued stay as they are.",
    )


class ProgramForm(Form):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    description = TextAreaField("Description for affiliates", validators=[Optional(), Length(max=4000)])
    status = SelectField(
        "Status", choices=options([(ProgramStatus.ACTIVE.value, "Active"), (ProgramStatus.PAUSED.value, "Paused")])
    )
    destination_url = URLField(
        "Destination URL",
        validators=[DataRequired(), Length(max=2048), https_destination],
        description="Where shoppers land, e.g. https://shop.example.com/signup. https only.",
    )
    allowed_hosts = TextAreaField(
        "Other hosts deep links may use",
        validators=[Optional(), Length(max=4000), host_list],
        description="One per line. The destination's own host is always allowed. Deep links keep the "
        "destination's scheme and port; add host:port (say shop.example.com:8443) to allow another port on a host.",
    )
    fallback_url = URLField(
        "Fallback URL for paused links",
        validators=[Optional(), Length(max=2048), https_destination],
        description="On the destination's host or one listed above: the redirector sends shoppers nowhere else.",
    )
    attribution_window_days = IntegerField(
        "Attribution window (days)",
        default=30,
        validators=[InputRequired(), NumberRange(min=1, max=365, message="Between 1 and 365 days.")],
    )
    cookie_days = IntegerField(
        "Cookie lifetime (days)",
        default=30,
        validators=[InputRequired(), NumberRange(min=1, max=730, message="Between 1 and 730 days.")],
    )
    attribution_model = SelectField(
        "Attribution model",
        choices=options(
            [(AttributionModel.LAST_CLICK.value, "Last click"), (AttributionModel.FIRST_CLICK.value, "First click")]
        ),
    )
    code_precedence = SelectField(
        "When a coupon and another affiliate's click both qualify",
        choices=options([("click", "The click wins"), ("code", "The coupon wins")]),
        default="click",
        description="A coupon credits its affiliate whenever no click qualifies.",
    )
    hold_days = IntegerField(
        "Hold period (days)",
        default=30,
        validators=[InputRequired(), NumberRange(min=0, max=365, message="Between 0 and 365 days.")],
    )
    enrollment = SelectField(
        "How affiliates join",
        choices=options(
            [
                (EnrollmentPolicy.OPEN.value, "Open: every approved affiliate may promote it"),
                (EnrollmentPolicy.APPLICATION.value, "By application: an admin approves each affiliate"),
                (EnrollmentPolicy.PRIVATE.value, "Private: by invitation only"),
            ]
        ),
    )
    currency = SelectField("Currency", choices=options([(code, code) for code in CURRENCIES]), default="USD")
    minimum_payout = StringField("Minimum payout", default="50.00", validators=[DataRequired(), Length(max=32)])

    def validate_fallback_url(self, field) -> None:
        if not field.data or self.destination_url.errors or self.allowed_hosts.errors:
            return
        try:
            hosts = {host_of(self.destination_url.data), *parse_host_list(self.allowed_hosts.data or "")}
            fallback = host_of(field.data)
        except (InvalidUrl, ValueError):
            return  # the field's own checks say what is wrong
        loopback = current_app.config.get("ALLOW_HTTP_LOOPBACK_DESTINATIONS") and fallback in LOOPBACK_HOSTS
        if not loopback and fallback not in hosts and not any(entry.startswith(f"{fallback}:") for entry in hosts):
            raise ValidationError(
                f"{fallback} is neither the destination's host nor one listed above, and the redirector sends shoppers "
                "only to those: add it to the hosts, or choose another fallback."
            )

    def validate_minimum_payout(self, field) -> None:
        try:
            self.minimum_payout_cents = parse_amount(field.data, self.currency.data)
        except InvalidAmount as error:
            raise ValidationError(str(error)) from None


class ApiKeyForm(Form):
    name = StringField(
        "Key name",
        validators=[DataRequired(), Length(max=120)],
        description="Where the key is used, e.g. “checkout server”.",
    )
    scopes = SelectMultipleField(
        "What the key may do",
        choices=options(SCOPES.items()),
        default=list(TRACKING_SCOPES),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired(message="Choose at least one thing the key may do.")],
        description="A checkout server needs only signups, sales and refunds. The management scopes act for you: "
        "what the key changes is audited under your name and the key's.",
    )


class KeyActionForm(Form):
    """Revoke, rotate or retire: a button, so only the CSRF token."""


class ErasureForm(Form):
    """Name a person to erase; the second step repeats the identifier with the confirmation."""

    kind = SelectField(
        "Find the person by",
        choices=options(
            [("email", "Email"), ("customer_id", "Customer id"), ("visitor_id", "Visitor id"), ("click_id", "Click id")]
        ),
    )
    value = StringField("Identifier", validators=[DataRequired(), Length(max=254)])
    step = HiddenField(default="find")
    confirm = BooleanField("I understand that this cannot be undone")
