"""The admin dashboard."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from affiliate.admin.forms import ErasureForm
from affiliate.auth.access import require_roles
from affiliate.database import reading
from affiliate.extensions import db
from affiliate.models import Role, UserStatus, utcnow
from affiliate.services import audit, erasure, people, programs
from affiliate.services.waiting import waiting

RECENT_CHANGES = 20

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/")
def index():
    """What waits for staff (applications, reviews, commissions, adjustments, batches), the affiliates and programs
    at a glance, and the latest changes."""
    counts = people.affiliates_by_status(db.session)
    program_count = programs.count(db.session)
    recent = audit.in_words(db.session, audit.latest(db.session, RECENT_CHANGES))
    return render_template(
        "admin/index.html",
        waiting=waiting(db.session),
        active=counts.get(UserStatus.ACTIVE.value, 0),
        suspended=counts.get(UserStatus.SUSPENDED.value, 0),
        programs=program_count,
        recent=recent,
    )


@bp.route("/erase-person", methods=["GET", "POST"])
def erase_person():
    """Find a person's clicks, conversions and member account, then, once confirmed, pseudonymise them."""
    form = ErasureForm()
    if not form.is_submitted():
        return render_template("admin/erase_person.html", form=form, found=None)
    if not form.validate():
        return render_template("admin/erase_person.html", form=form, found=None), 400
    try:
        with reading(db.session):
            found = erasure.find(db.session, form.kind.data, form.value.data)
    except erasure.NothingToErase as error:
        form.value.errors.append(str(error))
        return render_template("admin/erase_person.html", form=form, found=None), 400
    if form.step.data != "erase":
        form.step.data = "erase"
        return render_template("admin/erase_person.html", form=form, found=found)
    if not form.confirm.data:
        form.confirm.errors.append("Tick the box to confirm: erasure cannot be undone.")
        return render_template("admin/erase_person.html", form=form, found=found), 400
    erased = erasure.erase(
        db.session,
        form.kind.data,
        form.value.data,
        actor_id=current_user.id,
        now=utcnow(),
        via="admin portal",
        secret=current_app.config["SECRET_KEY"],
    )
    db.session.commit()
    changed = erased.changed
    flash(
        f"Pseudonymised {changed['clicks']} clicks, {changed['conversions']} conversions and "
        f"{changed['members']} member accounts (rows pseudonymised before are left as they are).",
        "success",
    )
    return redirect(url_for("admin.erase_person"), 303)
