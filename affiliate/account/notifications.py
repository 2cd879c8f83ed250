"""Which notifications a person receives: their settings page (the unsubscribe link in every notification is
auth.unsubscribe, as it works without signing in)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

from affiliate import notifications
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import utcnow
from affiliate.validators import options

bp = Blueprint("account_notifications", __name__, url_prefix="/account/notifications")


class SettingsForm(Form):
    on = SelectMultipleField(
        "Send me mail about",
        choices=[],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
    )


@bp.route("", methods=["GET", "POST"])
@login_required
def settings():
    user = current_user._get_current_object()
    kinds = notifications.optional_kinds(user.role)
    form = SettingsForm()
    form.on.choices = options((name, kind.label) for name, kind in kinds)
    if form.validate_on_submit():
        off = {name for name, _ in kinds} - set(form.on.data or ())
        notifications.set_opt_outs(db.session, user, off, now=utcnow())
        db.session.commit()
        flash("Notification settings saved.", "success")
        return redirect(url_for("account_notifications.settings"))
    if not form.is_submitted():
        silenced = notifications.opted_out(db.session, user.id)
        form.on.data = [name for name, _ in kinds if name not in silenced]
    security = [kind.label for kind in notifications.KINDS.values() if kind.security]
    status = 400 if form.is_submitted() else 200
    return render_template("account/notifications/settings.html", form=form, security=security), status
