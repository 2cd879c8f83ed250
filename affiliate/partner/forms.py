"""Forms of the partner area: creating and pausing links."""

from __future__ import annotations

from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from affiliate.forms import Form

SUB_HINT = "Your own label for reports, e.g. a placement or an ad id."


class LinkForm(Form):
    program_id = SelectField("Program", coerce=int, validators=[DataRequired(message="Choose a program.")])
    campaign = StringField("Campaign name", validators=[Optional(), Length(max=120)])
    sub1 = StringField("Sub-ID 1", validators=[Optional(), Length(max=255)], description=SUB_HINT)
    sub2 = StringField("Sub-ID 2", validators=[Optional(), Length(max=255)])
    sub3 = StringField("Sub-ID 3", validators=[Optional(), Length(max=255)])
    sub4 = StringField("Sub-ID 4", validators=[Optional(), Length(max=255)])
    sub5 = StringField("Sub-ID 5", validators=[Optional(), Length(max=255)])
    deep_link = StringField(
        "Deep link (optional)",
        validators=[Optional(), Length(max=2048)],
        description="A path such as /products/shoes, or a full https URL on one of the program's hosts.",
    )


class ToggleForm(Form):
    """Only a CSRF token: the action is in the URL."""
