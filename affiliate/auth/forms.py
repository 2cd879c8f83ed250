"""Forms for applying and signing in."""

from __future__ import annotations

from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField, TextAreaField, URLField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from affiliate.forms import Form
from affiliate.validators import web_url


class LoginForm(Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me signed in on this device (not available to staff)")


class SecondFactorFields:
    """A code from the authenticator app or a recovery code, or (filled in by the page's script) a key's answer."""

    code = StringField("Code from your authenticator app, or a recovery code", validators=[Optional(), Length(max=64)])
    assertion = HiddenField(validators=[Optional(), Length(max=16_384)])


class ReauthForm(SecondFactorFields, Form):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class SecondFactorForm(SecondFactorFields, Form):
    """The second step of signing in: the second-factor fields alone."""


class ForgotPasswordForm(Form):
    email = EmailField(
        "Email",
        validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)],
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
    )


class ResetPasswordForm(Form):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        "Repeat new password", validators=[DataRequired(), EqualTo("password", message="Passwords do not match.")]
    )


class ConfirmForm(Form):
    """A bare form: what it confirms is in the signed address."""


class ApplyForm(Form):
    name = StringField("Your name", validators=[DataRequired(), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        "Repeat password", validators=[DataRequired(), EqualTo("password", message="Passwords do not match.")]
    )
    website = URLField(
        "Website or main channel",
        validators=[Optional(), Length(max=500), web_url],
    )
    promotion = TextAreaField("How will you promote our programs?", validators=[DataRequired(), Length(max=2000)])


class SignupForm(Form):
    name = StringField("Your name", validators=[DataRequired(), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class UnsubscribeForm(Form):
    """A bare form: the signed token in the address names the person and the kind."""
