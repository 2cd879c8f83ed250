"""The outbox as an admin sees it: what was sent, what waits and why, and (with no SMTP server) the mail itself."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from affiliate import mail
from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import OutboxMessage, Role, utcnow
from affiliate.services import outbox

bp = Blueprint("admin_outbox", __name__, url_prefix="/admin/outbox")
bp.before_request(require_roles(Role.ADMIN))


class RetryForm(Form):
    """A bare form: the message is in the address."""


@bp.get("/")
def index():
    return render_template(
        "admin/outbox/index.html",
        messages=outbox.recent(db.session, limit=200),
        waiting=outbox.waiting(db.session),
        smtp=mail.smtp_configured(),
        form=RetryForm(),
    )


@bp.get("/<int:message_id>")
def show(message_id: int):
    """A message as it was written. Only while no SMTP server is set, that is in development: there the
    outbox is the only way to follow a reset link by hand; once mail is delivered, the links in it (a
    password reset above all) are for their recipient alone."""
    if mail.smtp_configured():
        abort(404)
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        abort(404)
    return render_template("admin/outbox/show.html", message=message)


@bp.post("/<int:message_id>/retry")
def retry(message_id: int):
    if not RetryForm().validate_on_submit():
        flash("Your form expired. Please try again.", "error")
    elif outbox.send_again_now(db.session, message_id, now=utcnow()):
        db.session.commit()
        flash("The message will be tried again at once.", "success")
    else:
        abort(404)
    return redirect(url_for("admin_outbox.index"))
