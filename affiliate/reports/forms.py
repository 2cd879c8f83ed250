"""The report filters: a range of UTC days and a program, read from the query string."""

from __future__ import annotations

import re
from datetime import date, timedelta

from wtforms import DateField, SelectField
from wtforms.validators import StopValidation, ValidationError

from affiliate.forms import Form
from affiliate.models import utcnow
from affiliate.services.report_figures import MAX_DAYS

DEFAULT_DAYS = 30
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)  # far beyond any data; keeps date arithmetic safe
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DayField(DateField):
    """A UTC calendar day typed as YYYY-MM-DD (what <input type="date"> sends)."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        text = valuelist[0].strip()
        try:
            if not ISO_DATE.fullmatch(text):
                raise ValueError(text)
            self.data = date.fromisoformat(text)
        except ValueError:
            self.data = None
            raise ValueError("Enter a date as YYYY-MM-DD, such as 2026-11-20.") from None


class ProgramField(SelectField):
    """A program among those offered (0: all); anything else, a number or not, gets one plain message."""

    MESSAGE = "Choose one of the programs listed."

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(self.MESSAGE) from None

    def pre_validate(self, form) -> None:
        if self.data not in {choice.value for choice in self.choices}:
            raise ValidationError(self.MESSAGE)


def _present(message: str):
    """Like DataRequired, but keeps the field's own parse error ("Enter a date as ...") instead of replacing it."""

    def check(form, field) -> None:
        if field.data is None:
            raise StopValidation(None if field.errors else message)

    return check


def _in_range(form, field) -> None:
    if field.data is not None and not FIRST_DAY <= field.data <= LAST_DAY:
        raise ValidationError(f"Choose a date between {FIRST_DAY} and {LAST_DAY}.")


def _today() -> date:
    return utcnow().date()


def _month_ago() -> date:
    return _today() - timedelta(days=DEFAULT_DAYS - 1)


class ReportForm(Form):
    """GET filters: they change nothing, so they carry no CSRF token."""

    class Meta:
        csrf = False

    start = DayField("From (UTC)", default=_month_ago, validators=[_present("Enter a start date."), _in_range])
    end = DayField("To (UTC)", default=_today, validators=[_present("Enter an end date."), _in_range])
    program = ProgramField("Program", coerce=int, default=0)

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        if self.end.data < self.start.data:
            self.end.errors.append("The end is before the start.")
            return False
        if (self.end.data - self.start.data).days + 1 > MAX_DAYS:
            self.end.errors.append(f"Choose at most {MAX_DAYS} days.")
            return False
        return True
