"""Programs, for admins: list, create, edit."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from affiliate.admin.forms import ProgramForm
from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import AttributionModel, Program, ProgramStatus, Role, utcnow
from affiliate.money import plain_amount
from affiliate.services import programs as program_service
from affiliate.services.programs import ProgramError, ProgramSettings, save_program

bp = Blueprint("admin_programs", __name__, url_prefix="/admin/programs")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/")
def index():
    return render_template("admin/programs/index.html", programs=program_service.by_name(db.session))


@bp.route("/new", methods=["GET", "POST"])
def create():
    form = ProgramForm()
    if form.validate_on_submit():
        try:
            program = save_program(db.session, None, _settings(form), actor=current_user, now=utcnow())
        except ProgramError as error:
            _field_error(form, error)
        else:
            db.session.commit()
            flash(f"Program {program.name} created.", "success")
            return redirect(url_for("admin_programs.index"))
    return render_template("admin/programs/form.html", form=form, program=None)


@bp.route("/<int:program_id>/edit", methods=["GET", "POST"])
def edit(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    form = ProgramForm(obj=program)
    if not form.is_submitted():
        form.allowed_hosts.data = "\n".join(program.allowed_host_list)
        form.minimum_payout.data = plain_amount(program.minimum_payout_cents, program.currency)
    if form.validate_on_submit():
        try:
            save_program(db.session, program, _settings(form), actor=current_user, now=utcnow())
        except ProgramError as error:
            _field_error(form, error)
        else:
            db.session.commit()
            flash(f"Program {program.name} saved.", "success")
            return redirect(url_for("admin_programs.index"))
    return render_template("admin/programs/form.html", form=form, program=program)


def _settings(form: ProgramForm) -> ProgramSettings:
    return ProgramSettings(
        name=form.name.data.strip(),
        description=form.description.data or None,
        status=ProgramStatus(form.status.data),
        destination_url=form.destination_url.data,
        allowed_hosts=tuple(form.allowed_hosts.data.split()),
        fallback_url=form.fallback_url.data or None,
        attribution_window_days=form.attribution_window_days.data,
        cookie_days=form.cookie_days.data,
        attribution_model=AttributionModel(form.attribution_model.data),
        hold_days=form.hold_days.data,
        currency=form.currency.data,
        minimum_payout_cents=form.minimum_payout_cents,
        enrollment=form.enrollment.data,
        code_precedence=form.code_precedence.data,
    )


def _field_error(form: ProgramForm, error: ProgramError) -> None:
    db.session.rollback()
    field = getattr(form, error.field) if error.field else None
    if field is not None:
        field.errors.append(str(error))
    else:
        form.form_errors.append(str(error))
