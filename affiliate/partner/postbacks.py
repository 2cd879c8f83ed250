"""An affiliate's postbacks: their tracker is called when a conversion of theirs is recorded, approved or reversed."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectField

from affiliate.admin.webhooks import ActionForm, PostbackForm, check_postback_url
from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Postback, Program, Role, utcnow
from affiliate.services import deliveries, enrollment, postbacks
from affiliate.validators import options

bp = Blueprint("partner_postbacks", __name__, url_prefix="/partner/postbacks")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


class AffiliatePostbackForm(PostbackForm):
    program = SelectField("Program", coerce=str)


def _programs() -> list[Program]:
    """The programs this affiliate may promote, so may receive postbacks for."""
    return [entry.program for entry in enrollment.standings(db.session, current_user.id) if entry.can_promote]


@bp.route("/", methods=["GET", "POST"])
def index():
    programs = _programs()
    form = AffiliatePostbackForm()
    form.program.choices = options((str(program.id), program.name) for program in programs)
    status = 200
    if form.validate_on_submit():
        program = next(p for p in programs if str(p.id) == form.program.data)
        settings = postbacks.PostbackSettings(form.url_template.data, form.method.data, tuple(form.events.data or ()))
        try:
            postbacks.save(
                db.session,
                program,
                current_user.id,
                settings,
                actor=current_user,
                now=utcnow(),
                check_url=check_postback_url,
            )
        except postbacks.PostbackError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
            status = 422
        else:
            db.session.commit()
            flash(f"Postback saved for {program.name}.", "success")
            return redirect(url_for("partner_postbacks.index"))
    elif form.is_submitted():
        status = 422
    mine = [(program, postbacks.postbacks_of(db.session, program.id, current_user.id)) for program in programs]
    logs = {
        postback.id: deliveries.log_of(db.session, postback_id=postback.id, limit=10)
        for _, found in mine
        for postback in found
    }
    dead = {
        postback.id: deliveries.counts(db.session, postback_id=postback.id).get(deliveries.DEAD, 0)
        for _, found in mine
        for postback in found
    }
    return render_template(
        "partner/postbacks/index.html",
        form=form,
        mine=mine,
        logs=logs,
        dead=dead,
        action=ActionForm(),
        macros=postbacks.MACROS,
    ), status


def _mine_or_404(postback_id: int) -> Postback:
    postback = db.session.get(Postback, postback_id)
    if postback is None or postback.affiliate_id != current_user.id:
        abort(404)
    return postback


@bp.post("/<int:postback_id>/enabled/<any(on, off):state>")
def set_enabled(postback_id: int, state: str):
    """Turn a postback back on once its tracker answers again (its waiting calls go at once), or off."""
    postback = _mine_or_404(postback_id)
    if ActionForm().validate_on_submit():
        postbacks.set_enabled(db.session, postback, state == "on", actor=current_user, now=utcnow())
        db.session.commit()
        flash("Postback turned on: its waiting calls go now." if state == "on" else "Postback turned off.", "success")
    return redirect(url_for("partner_postbacks.index"))


@bp.post("/<int:postback_id>/resend")
def resend(postback_id: int):
    """Send again the calls that ran out of retries, with their ids."""
    postback = _mine_or_404(postback_id)
    if ActionForm().validate_on_submit():
        sent = postbacks.resend_dead(db.session, postback, actor=current_user, now=utcnow())
        db.session.commit()
        flash(f"{sent} call{'s' if sent != 1 else ''} will be sent again now.", "success")
    return redirect(url_for("partner_postbacks.index"))


@bp.post("/<int:postback_id>/delete")
def delete(postback_id: int):
    postback = _mine_or_404(postback_id)
    if ActionForm().validate_on_submit():
        postbacks.delete(db.session, postback, actor=current_user, now=utcnow())
        db.session.commit()
        flash("Postback deleted.", "success")
    return redirect(url_for("partner_postbacks.index"))
