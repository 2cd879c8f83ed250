"""Forms for a person's own account."""

from __future__ import annotations

from wtforms import EmailField, PasswordField, SelectField, StringField, TextAreaField, URLField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from affiliate.forms import Form
from affiliate.models import PayoutMethod
from affiliate.services.exports import neutralise
from affiliate.validators import options, web_url


class ProfileForm(Form):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    website = URLField("Website or main channel", validators=[Optional(), Length(max=500), web_url])
    promotion = TextAreaField("How you promote", validators=[Optional(), Length(max=2000)])


class PayoutForm(Form):
    method = SelectField(
        "Payout method",
        choices=options(
            [
                ("", "Choose…"),
                (PayoutMethod.PAYPAL.value, "PayPal"),
                (PayoutMethod.WISE.value, "Wise"),
                (PayoutMethod.BANK.value, "Bank transfer (IBAN)"),
            ]
        ),
        validators=[DataRequired(message="Choose how you want to be paid.")],
    )
    email = EmailField(
        "PayPal or Wise email", validators=[Optional(), Email(check_deliverability=False), Length(max=254)]
    )
    account_name = StringField("Account holder", validators=[Optional(), Length(max=120)])
    iban = StringField("IBAN", validators=[Optional(), Length(max=42)])

    def validate(self, extra_validators=None) -> bool:
        # Which fields are required depends on the method; Optional() would stop the check early.
        valid = super().validate(extra_validators)
        method = self.method.data
        if method in (PayoutMethod.PAYPAL, PayoutMethod.WISE) and not self.email.data:
            self.email.errors.append("Enter the email address of your PayPal or Wise account.")
            valid = False
        elif method in (PayoutMethod.PAYPAL, PayoutMethod.WISE) and neutralise(self.email.data) != self.email.data:
            # A payout file would have to carry it with a quote before it (spreadsheets run such text), and the
            # provider would be told to pay another address.
            self.email.errors.append(
                "An address starting with -, +, = or @ cannot go into a payout file as it is; use another address."
            )
            valid = False
        if method == PayoutMethod.BANK:
            if not (self.account_name.data or "").strip():
                self.account_name.errors.append("Enter the name on the bank account.")
                valid = False
            iban = "".join((self.iban.data or "").split()).upper()
            if is_valid_iban(iban):
                self.iban.data = iban
            else:
                self.iban.errors.append("Enter a valid IBAN, such as GB82 WEST 1234 5698 7654 32.")
                valid = False
        return valid


def is_valid_iban(iban: str) -> bool:
    """Check an IBAN's shape and its ISO 7064 mod-97 check digits."""
    if not (15 <= len(iban) <= 34) or not iban.isascii() or not iban.isalnum():
        return False
    if not (iban[:2].isalpha() and iban[2:4].isdigit()):
        return False
    digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


class PasswordForm(Form):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=256)])
    new = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        "Repeat new password", validators=[DataRequired(), EqualTo("new", message="Passwords do not match.")]
    )


class SignOutForm(Form):
    """Sign out another device, or all of them: a button, so only the CSRF token."""
