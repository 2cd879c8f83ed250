"""Forms for applying and signing in."""

from __future__ import annotations

from wtforms import BooleanField, EmailField, PasswordField, StringField, TextAreaField, URLField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from affiliate.forms import Form
from affiliate.validators import web_url


class LoginForm(Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me signed in on this device (not available to staff)")


class ReauthForm(Form):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


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
