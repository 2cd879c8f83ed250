"""Forms of the partner area: creating and pausing links, and filtering the affiliate's conversions."""

from __future__ import annotations

from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from affiliate.forms import Form
from affiliate.reports.forms import FIRST_DAY, LAST_DAY, DayField, ProgramField
from affiliate.services.partner_conversions import SEARCH_MAX, STATUS_NAMES, TYPE_NAMES, Wanted
from affiliate.validators import options

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


class OptionalDayField(DayField):
    """A UTC day typed as YYYY-MM-DD, or left empty (no bound)."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        super().process_formdata(valuelist)


class ChoiceField(SelectField):
    """One of the options listed (the first, "", for any); anything else gets one plain message."""

    def pre_validate(self, form) -> None:
        if self.data not in {choice.value for choice in self.choices}:
            raise ValidationError(f"Choose one of the {self.label.text.lower()} options listed.")


class ConversionFilterForm(Form):
    """GET filters of the affiliate's conversions: they change nothing, so they carry no CSRF token."""

    class Meta:
        csrf = False

    order = StringField("Order id", validators=[Optional(), Length(max=SEARCH_MAX)])
    program = ProgramField("Program", coerce=int, default=0)
    type = ChoiceField("Type", default="", choices=options([("", "Any type"), *TYPE_NAMES.items()]))
    status = ChoiceField("Status", default="", choices=options([("", "Any status"), *STATUS_NAMES.items()]))
    start = OptionalDayField("From (UTC)", validators=[Optional()])
    end = OptionalDayField("To (UTC)", validators=[Optional()])

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        if self.start.data and self.end.data and self.end.data < self.start.data:
            self.end.errors.append("The end is before the start.")
            return False
        for day in (self.start, self.end):
            if day.data is not None and not FIRST_DAY <= day.data <= LAST_DAY:
                day.errors.append(f"Choose a date between {FIRST_DAY:%Y-%m-%d} and {LAST_DAY:%Y-%m-%d}.")
                return False
        return True

    def wanted(self) -> Wanted:
        return Wanted(
            program_id=self.program.data or None,
            type=self.type.data or None,
            status=self.status.data or None,
            start=self.start.data,
            end=self.end.data,
            order=(self.order.data or "").strip() or None,
        )

    def query(self) -> dict:
        """The filters in force as query arguments, for the pager's links."""
        values = {
            "order": (self.order.data or "").strip(),
            "program": self.program.data or "",
            "type": self.type.data,
            "status": self.status.data,
            "start": self.start.data.isoformat() if self.start.data else "",
            "end": self.end.data.isoformat() if self.end.data else "",
        }
        return {name: value for name, value in values.items() if value}
