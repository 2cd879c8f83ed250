"""The base of every portal form, and the one list of rows a form holds."""

from __future__ import annotations

from flask_wtf import FlaskForm
from werkzeug.datastructures import CombinedMultiDict
from wtforms import FieldList, StringField

from affiliate.validators import UNSTORABLE_MESSAGE, unstorable


class Form(FlaskForm):
    """A FlaskForm whose fields refuse text the database cannot store, as a form error rather than a server error."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            """No portal form takes a file. Flask-WTF would hand a field sent as a file part to its validators and
            the view as a file object, where text is expected (a server error); such a field is not there."""
            wrapped = super().wrap_formdata(form, formdata)
            if isinstance(wrapped, CombinedMultiDict):
                return wrapped.dicts[1]  # the form's own fields, without request.files
            return wrapped

    def validate(self, extra_validators=None) -> bool:
        for field in self:
            # A text field left out of the request altogether reads as empty, as the browser would have sent it.
            if isinstance(field, StringField) and field.data is None and not field.raw_data:
                field.data = ""
        valid = super().validate(extra_validators)
        for field in self:
            if any(isinstance(raw, str) and unstorable(raw) for raw in field.raw_data or ()):
                field.errors = [*field.errors, f"{field.label.text} {UNSTORABLE_MESSAGE}."]
                valid = False
        return valid


class RowList(FieldList):
    """A FieldList that reads only its own rows' names: ``tiers-0-threshold`` up to ``max_entries``. WTForms takes
    any Unicode digit (``tiers-²-threshold``) or a number of thousands of digits as a row index and fails on it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.type = "FieldList"  # drawn as one (the error summary links a row's message to the row's first field)

    def _extract_indices(self, prefix, formdata):
        offset = len(prefix) + 1
        for key in formdata:
            if key.startswith(prefix):
                index = key[offset:].split(self._field_separator, 1)[0]
                if index.isascii() and index.isdigit() and len(index) <= 3:
                    yield int(index)
