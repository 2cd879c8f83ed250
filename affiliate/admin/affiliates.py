"""Affiliate applications and accounts, for admin and finance staff; finance's bonuses and clawbacks."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.admin.forms import DecisionForm, RecruiterForm
from affiliate.auth.access import only_roles, require_roles
from affiliate.extensions import db
from affiliate.finance.forms import AdjustmentForm
from affiliate.models import AdjustmentStatus, Role, User, UserStatus, utcnow
from affiliate.money import format_amount
from affiliate.params import paginate, sort_param, text_param
from affiliate.services import accounts, adjustments, audit, people, programs, recruiters, security_keys

bp = Blueprint("admin_affiliates", __name__, url_prefix="/admin/affiliates")
bp.before_request(require_roles(Role.ADMIN, Role.FINANCE))

STATUS_FILTERS = ("all", *(status.value for status in UserStatus))


@bp.route("/")
def index():
    status = request.args.get("status", "pending" if current_user.role == Role.ADMIN else "all")
    if status not in STATUS_FILTERS:
        status = "all"
    query = text_param("q")
    sort = sort_param(people.AFFILIATE_SORTS, people.NEWEST)
    page = paginate(people.affiliates(status=None if status == "all" else status, search=query, sort=sort))
    filters = {"status": status, **({"q": query} if query else {})}
    return render_template(
        "admin/affiliates/index.html",
        page=page,
        status=status,
        statuses=STATUS_FILTERS,
        query=query,
        sort=sort,
        filters=filters,
        kept={**filters, **sort.args()},
    )


ADJUSTMENTS_SHOWN = 20


@bp.route("/<int:user_id>")
def show(user_id: int):
    return _render_show(_affiliate_or_404(user_id))


@bp.post("/<int:user_id>/adjustments")
def adjust(user_id: int):
    """Add a bonus or clawback: posted at once within the approval threshold, else left for a second person."""
    affiliate = _affiliate_or_404(user_id)
    form = _adjustment_form()
    if not form.validate_on_submit():
        return _render_show(affiliate, form, 422)
    request_ = adjustments.AdjustmentRequest(
        affiliate_id=affiliate.id,
        program_id=form.program_id,
        kind=form.kind.data,
        amount_cents=form.amount_cents,
        reason=form.reason.data,
        currency=form.currencies[form.program_id],
    )
    try:
        adjustment = adjustments.create(
            db.session,
            request_,
            actor=current_user,
            now=utcnow(),
            thresholds=current_app.config["ADJUSTMENT_APPROVAL_THRESHOLDS"],
        )
    except adjustments.AdjustmentError as error:
        db.session.rollback()
        form.form_errors.append(str(error))
        return _render_show(affiliate, form, 422)
    db.session.commit()
    amount = format_amount(adjustment.amount_cents, adjustment.currency)
    if adjustment.status == AdjustmentStatus.PENDING_APPROVAL:
        flash(
            f"{adjustment.kind.capitalize()} #{adjustment.id} of {amount} is over the approval threshold: a second "
            "finance user must approve it before it is posted.",
            "info",
        )
    else:
        flash(
            f"{adjustment.kind.capitalize()} #{adjustment.id} of {amount} posted to {affiliate.name}'s balance.",
            "success",
        )
    return _back(affiliate)


def _render_show(affiliate: User, adjustment_form: AdjustmentForm | None = None, status: int = 200):
    history = audit.in_words(db.session, audit.history_of(db.session, "user", affiliate.id))
    recent = adjustments.recent_for(db.session, affiliate.id, ADJUSTMENTS_SHOWN)
    recruiter = affiliate.referred_by
    return render_template(
        "admin/affiliates/show.html",
        affiliate=affiliate,
        history=history,
        form=DecisionForm(),
        recruiter_form=RecruiterForm(formdata=None, code=recruiter.referral_code if recruiter else ""),
        recruits=recruiters.recruits(db.session, affiliate.id),
        adjustment_form=adjustment_form or _adjustment_form(),
        adjustments=recent,
        has_security_key=bool(security_keys.keys_of(db.session, affiliate)),
    ), status


def _adjustment_form() -> AdjustmentForm:
    choices = [(program.id, program.name, program.currency) for program in programs.by_name(db.session)]
    return AdjustmentForm(choices)


@bp.route("/<int:user_id>/decision", methods=["POST"])
@only_roles(Role.ADMIN)
def decide(user_id: int):
    affiliate = _affiliate_or_404(user_id)
    form = DecisionForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _back(affiliate)
    try:
        accounts.decide_affiliate(
            db.session, affiliate, form.action.data, reason=form.reason.data, actor=current_user, now=utcnow()
        )
    except accounts.InvalidTransition as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back(affiliate)
    db.session.commit()
    flash(f"{affiliate.name} is now {affiliate.status}.", "success")
    return _back(affiliate)


@bp.post("/<int:user_id>/recruiter")
@only_roles(Role.ADMIN)
def change_recruiter(user_id: int):
    """Set or clear who recruited an affiliate (admins only; audited). Counts for conversions evaluated after."""
    affiliate = _affiliate_or_404(user_id)
    form = RecruiterForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _back(affiliate)
    try:
        recruiter = recruiters.set_recruiter(
            db.session, affiliate, form.code.data or "", actor_id=current_user.id, now=utcnow()
        )
    except recruiters.RecruiterError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back(affiliate)
    db.session.commit()
    flash(
        f"{affiliate.name} is now recruited by {recruiter.name}."
        if recruiter
        else f"{affiliate.name} has no recruiter now.",
        "success",
    )
    return _back(affiliate)


def _flash_errors(form) -> None:
    for errors in form.errors.values():
        for error in errors:
            flash(error, "error")


def _back(affiliate: User):
    return redirect(url_for("admin_affiliates.show", user_id=affiliate.id), 303)


def _affiliate_or_404(user_id: int) -> User:
    return people.affiliate(db.session, user_id) or abort(404)
