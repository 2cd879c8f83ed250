"""Enrollment of a program, for admins: applications to decide, enrolled affiliates, invitation links."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.mail import external_url
from affiliate.models import EnrollmentStatus, Program, Role, utcnow
from affiliate.params import parse_id
from affiliate.services import enrollment
from affiliate.services.groups import groups_of

bp = Blueprint("admin_enrollments", __name__, url_prefix="/admin/programs/<int:program_id>/enrollment")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/")
def index(program_id: int):
    return _page(db.session.get(Program, program_id) or abort(404))


def _page(program: Program, invitation: str | None = None):
    rows = enrollment.enrollments_of(db.session, program.id)
    by_status: dict[str, list] = {status.value: [] for status in EnrollmentStatus}
    for row, user in rows:
        by_status[row.status].append((row, user))
    return render_template(
        "admin/enrollments/index.html",
        program=program,
        by_status=by_status,
        groups=groups_of(db.session, program.id),
        invitation=invitation,
    )


@bp.post("/decide")
def decide(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    affiliate = parse_id(request.form.get("affiliate"))
    if affiliate is None:
        flash("Choose an affiliate.", "error")
        return redirect(url_for("admin_enrollments.index", program_id=program.id))
    try:
        enrollment.decide(
            db.session,
            program,
            affiliate,
            request.form.get("decision", ""),
            actor_id=current_user.id,
            reason=request.form.get("reason"),
            now=utcnow(),
        )
    except enrollment.EnrollmentError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash("Enrollment updated.", "success")
    return redirect(url_for("admin_enrollments.index", program_id=program.id))


@bp.post("/invite")
def invite(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    group = request.form.get("group", "default")
    group_ids = {g.id for g in groups_of(db.session, program.id) if g.id is not None}
    group_id = parse_id(group)
    if group != "default" and group_id not in group_ids:
        flash("Choose one of this program's groups.", "error")
        return redirect(url_for("admin_enrollments.index", program_id=program.id))
    token = enrollment.invitation(current_app.config["SECRET_KEY"], program, group_id)
    # Shown once, on this answer, never carried in a URL that someone else could craft.
    return _page(program, invitation=external_url("partner.join", token=token))
