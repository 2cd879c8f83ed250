"""Which notifications a person receives: their settings page and the unsubscribe link in every notification."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

from affiliate import notifications
from affiliate.extensions import csrf, db
from affiliate.forms import Form
from affiliate.models import User, utcnow
from affiliate.validators import options

bp = Blueprint("notifications", __name__)


class SettingsForm(Form):
    on = SelectMultipleField("Send me mail about", choices=[], widget=ListWidget(prefix_label=False),
                             option_widget=CheckboxInput(), validate_choice=True)  # fmt: skip


class UnsubscribeForm(Form):
    """A bare form: the signed token in the address names the person and the kind."""


@bp.route("/account/notifications", methods=["GET", "POST"])
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
        return redirect(url_for("notifications.settings"))
    if not form.is_submitted():
        silenced = notifications.opted_out(db.session, user.id)
        form.on.data = [name for name, _ in kinds if name not in silenced]
    security = [kind.label for kind in notifications.KINDS.values() if kind.security]
    status = 400 if form.is_submitted() else 200
    return render_template("account/notifications.html", form=form, security=security), status


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str):
    """GET asks first (mail scanners follow links); POST turns the kind off, as RFC 8058's one-click does."""
    found = notifications.read_unsubscribe_token(token[:512])
    if found is None:
        abort(404)
    user_id, kind = found
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    label = notifications.KINDS[kind].label
    if request.method == "POST":
        notifications.opt_out(db.session, user.id, kind, now=utcnow())
        db.session.commit()
        return render_template("account/unsubscribed.html", label=label, email=user.email, done=True,
                               form=UnsubscribeForm())  # fmt: skip
    return render_template("account/unsubscribed.html", label=label, email=user.email, done=False,
                           form=UnsubscribeForm())  # fmt: skip
