"""Staff accounts and their two-factor sign-in, and an admin's reset of someone's second factor."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from affiliate.auth import notices
from affiliate.auth.access import require_roles
from affiliate.auth.sessions import login_is_fresh
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import Role, User, utcnow
from affiliate.services import people, second_factor

bp = Blueprint("admin_people", __name__, url_prefix="/admin/people")
bp.before_request(require_roles(Role.ADMIN))


class ResetForm(Form):
    """A bare form: the person is in the address."""


@bp.get("/")
def index():
    """Who works in the portal, and whether each has the second factor their role requires."""
    return render_template("admin/people/index.html", rows=people.staff(db.session), form=ResetForm())


@bp.post("/<int:user_id>/reset-second-factor")
def reset_second_factor(user_id: int):
    """Remove every second factor of someone who lost them; they are signed out and mailed, and staff enrol again."""
    person = db.session.get(User, user_id) or abort(404)
    back = (
        url_for("admin_affiliates.show", user_id=person.id)
        if person.role == Role.AFFILIATE
        else url_for("admin_people.index")
    )
    if not ResetForm().validate_on_submit():
        flash("Your form expired. Please try again.", "error")
        return redirect(back)
    if not second_factor.has_second_factor(db.session, person):
        flash(f"{person.email} has no second factor to reset.", "info")
        return redirect(back)
    if not login_is_fresh(utcnow(), second_factor=True):
        flash(
            "Resetting someone's two-factor sign-in needs a recent sign-in. Confirm it is you, then reset again.",
            "info",
        )
        return redirect(url_for("auth.reauth", next=back), 303)
    try:
        second_factor.reset(db.session, person, actor=current_user, now=utcnow())
    except second_factor.SecondFactorError as error:
        flash(str(error), "error")
        return redirect(back)
    notices.second_factor_changed(
        person, f"{current_user.name}, an administrator, reset your two-factor sign-in and signed you out everywhere"
    )
    db.session.commit()
    flash(
        f"Two-factor sign-in of {person.email} is reset and they are signed out. "
        + ("They set it up again at their next sign-in." if second_factor.required(person) else ""),
        "success",
    )
    return redirect(back)
