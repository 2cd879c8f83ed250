"""Merchant API keys, per program, for admins: issue (shown once), rotate the signing secret, revoke."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from affiliate.admin.forms import ApiKeyForm, KeyActionForm
from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import ApiKey, Program, Role, utcnow
from affiliate.services.api_keys import issue_key, keys_of, retire_previous_secret, revoke_key, rotate_secret

bp = Blueprint("admin_api_keys", __name__, url_prefix="/admin/programs/<int:program_id>/keys")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/", methods=["GET", "POST"])
def index(program_id: int):
    program = _program_or_404(program_id)
    form = ApiKeyForm()
    if form.validate_on_submit():
        issued = issue_key(
            db.session, program, form.name.data.strip(), actor=current_user, now=utcnow(), scopes=form.scopes.data
        )
        db.session.commit()
        # Rendered, not redirected: the secrets exist only in this one response.
        return render_template("admin/api_keys/key_issued.html", program=program, issued=issued)
    return _render(program, form)


@bp.post("/<int:key_id>/rotate")
def rotate(program_id: int, key_id: int):
    key = _key_or_404(program_id, key_id)
    if KeyActionForm().validate_on_submit() and key.revoked_at is None:
        secret = rotate_secret(db.session, key, actor=current_user, now=utcnow())
        db.session.commit()
        return render_template("admin/api_keys/key_rotated.html", program=key_program(key), key=key, secret=secret)
    flash("That key cannot be rotated.", "error")
    return redirect(url_for("admin_api_keys.index", program_id=program_id))


@bp.post("/<int:key_id>/retire")
def retire(program_id: int, key_id: int):
    key = _key_or_404(program_id, key_id)
    if KeyActionForm().validate_on_submit() and key.previous_signing_secret:
        retire_previous_secret(db.session, key, actor=current_user, now=utcnow())
        db.session.commit()
        flash(f"Key {key.prefix}: only the new signing secret is accepted now.", "success")
    return redirect(url_for("admin_api_keys.index", program_id=program_id))


@bp.post("/<int:key_id>/revoke")
def revoke(program_id: int, key_id: int):
    key = _key_or_404(program_id, key_id)
    if KeyActionForm().validate_on_submit() and revoke_key(db.session, key, actor=current_user, now=utcnow()):
        db.session.commit()
        flash(f"Key {key.prefix} revoked; requests with it are refused from now on.", "success")
    return redirect(url_for("admin_api_keys.index", program_id=program_id))


def _render(program: Program, form: ApiKeyForm):
    keys = keys_of(db.session, program.id)
    return render_template(
        "admin/api_keys/index.html", program=program, keys=keys, form=form, action_form=KeyActionForm()
    )


def key_program(key: ApiKey) -> Program:
    return db.session.get(Program, key.program_id)


def _program_or_404(program_id: int) -> Program:
    return db.session.get(Program, program_id) or abort(404)


def _key_or_404(program_id: int, key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None or key.program_id != program_id:
        abort(404)
    return key
