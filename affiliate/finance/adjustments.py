"""Bonuses and clawbacks waiting for a second finance user: approve (with a fresh login) or reject."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.auth.sessions import login_is_fresh
from affiliate.extensions import db
from affiliate.finance.forms import ApproveAdjustmentForm, RejectAdjustmentForm
from affiliate.models import Adjustment, Role, utcnow
from affiliate.money import format_amount
from affiliate.params import paginate, sort_param
from affiliate.services import adjustments as service
from affiliate.services import people
from affiliate.services import programs as program_service

DECIDED_SHOWN = 20

bp = Blueprint("finance_adjustments", __name__, url_prefix="/finance/adjustments")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    return _render_index()


@bp.post("/<int:adjustment_id>/approve")
def approve(adjustment_id: int):
    """The second person approves, which posts it; like a payout batch, it needs a fresh password and second factor."""
    adjustment = db.session.get(Adjustment, adjustment_id) or abort(404)
    if not ApproveAdjustmentForm().validate_on_submit():
        return _render_index(400)
    now = utcnow()
    if not login_is_fresh(now, second_factor=True):
        flash("Approving needs a recent sign-in. Enter your password and second factor, then approve again.", "info")
        return redirect(url_for("auth.reauth", next=url_for("finance_adjustments.index")), 303)
    try:
        service.approve(db.session, adjustment.id, approver=current_user, now=now)
    except service.AdjustmentError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_index(409)
    db.session.commit()
    flash(
        f"Adjustment #{adjustment.id} approved and posted: "
        f"{format_amount(adjustment.amount_cents, adjustment.currency)} {adjustment.kind}.",
        "success",
    )
    return redirect(url_for("finance_adjustments.index"), 303)


@bp.post("/<int:adjustment_id>/reject")
def reject(adjustment_id: int):
    adjustment = db.session.get(Adjustment, adjustment_id) or abort(404)
    form = RejectAdjustmentForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return _render_index(422)
    try:
        service.reject(db.session, adjustment.id, actor=current_user, note=form.note.data, now=utcnow())
    except service.AdjustmentError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_index(409)
    db.session.commit()
    flash(f"Adjustment #{adjustment.id} rejected: nothing was posted.", "success")
    return redirect(url_for("finance_adjustments.index"), 303)


def _render_index(status: int = 200):
    sort = sort_param(service.WAITING_SORTS, service.OLDEST)
    page = paginate(service.waiting(sort))
    decided = service.recently_decided(db.session, DECIDED_SHOWN)
    rows = [*page.items, *decided]
    people_named = {a.affiliate_id for a in rows} | {a.created_by_id for a in rows} | {a.approved_by_id for a in rows}
    names = people.names(db.session, people_named | {a.rejected_by_id for a in rows})
    programs = program_service.names(db.session, {a.program_id for a in rows})
    return render_template(
        "finance/adjustments/index.html",
        page=page,
        decided=decided,
        names=names,
        programs=programs,
        approve_form=ApproveAdjustmentForm(),
        reject_form=RejectAdjustmentForm(),
        sort=sort,
    ), status
