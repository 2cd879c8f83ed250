"""A program's fraud rules, for admins: which checks run, what each does when it fires, and its thresholds."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Program, Role, utcnow
from affiliate.services.fraud import DEFAULT_RULES, Action
from affiliate.services.fraud_rules import RuleError, parse_settings, save_rules
from affiliate.services.screening import program_rules

bp = Blueprint("admin_fraud_rules", __name__, url_prefix="/admin/programs/<int:program_id>/fraud")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/", methods=["GET", "POST"])
def edit(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            parsed = parse_settings(request.form)
        except RuleError as error:
            errors[error.field] = str(error)
        else:
            changed = save_rules(db.session, program, parsed, actor=current_user, now=utcnow())
            db.session.commit()
            flash(
                f"{changed} rule{'s' if changed != 1 else ''} changed. Changes apply to new clicks and conversions "
                "(clicks within 30 seconds); verdicts already given stay as they were.",
                "success",
            )
            return redirect(url_for("admin_fraud_rules.edit", program_id=program.id))
    return render_template(
        "admin/fraud_rules/edit.html",
        program=program,
        settings=program_rules(db.session, program.id),
        errors=errors,
        form=request.form,
        actions=[a.value for a in Action],
        thresholds={name: list(rule.settings) for name, rule in DEFAULT_RULES.items()},
    ), (422 if errors else 200)
