"""The base of every portal form."""

from __future__ import annotations

from flask_wtf import FlaskForm

from affiliate.validators import UNSTORABLE_MESSAGE, unstorable


class Form(FlaskForm):
    """A FlaskForm whose fields refuse text the database cannot store, as a form error rather than a server error."""

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if any(isinstance(raw, str) and unstorable(raw) for raw in field.raw_data or ()):
                field.errors = [*field.errors, f"{field.label.text} {UNSTORABLE_MESSAGE}."]
                valid = False
        return valid
