"""Conversions for finance and admin: all of them, filtered, each with its full attribution trace."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Conversion, ConversionStatus, ConversionType, Role, utcnow
from affiliate.params import list_filters, paginate, sort_param
from affiliate.services import people, programs
from affiliate.services.conversion_lists import CONVERSION_SORTS, NEWEST, ConversionFilter, commissions_of, filtered
from affiliate.services.conversions import attribution_of
from affiliate.services.review import EARNING, decide
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

bp = Blueprint("admin_conversions", __name__, url_prefix="/admin/conversions")
bp.before_request(require_roles(Role.ADMIN, Role.FINANCE))


@bp.route("/")
def index():
    """Every conversion, newest first or sorted by a column, narrowed by program, affiliate (name, email, referral
    code or id), order id, type, status, attribution and the days it occurred on."""
    args = request.args
    shared = list_filters()
    kind = args.get("type") if args.get("type") in set(ConversionType) else ""
    status = args.get("status") if args.get("status") in set(ConversionStatus) else ""
    unattributed = args.get("attributed") == "no"
    wanted = ConversionFilter(
        program_id=shared.program_id,
        type=kind or None,
        status=status or None,
        unattributed=unattributed,
        affiliate=shared.affiliate,
        order=shared.order,
        days=shared.days,
    )
    filters = {**shared.args, "type": kind, "status": status, "attributed": "no" if unattributed else ""}
    filters = {key: value for key, value in filters.items() if value}
    sort = sort_param(CONVERSION_SORTS, NEWEST)
    for error in shared.errors:
        flash(error, "warning")
    return render_template(
        "admin/conversions/index.html",
        page=paginate(filtered(wanted, sort)),
        programs=programs.by_name(db.session),
        types=list(ConversionType),
        statuses=list(ConversionStatus),
        filters=filters,
        sort=sort,
        kept={**filters, **sort.args()},
    )


@bp.route("/<bigid:conversion_id>")
def show(conversion_id: int):
    conversion = db.session.get(Conversion, conversion_id) or abort(404)
    trace = attribution_of(conversion)
    earned = commissions_of(db.session, conversion.id)
    credited = {line.get("affiliate_id") for line in trace.get("trace", [])} | {trace.get("affiliate_id")}
    names = people.names(db.session, credited | {c.affiliate_id for c in earned})
    verdict = json.loads(conversion.fraud_reasons) if conversion.fraud_reasons else []
    return render_template(
        "shared/conversions/show.html",
        conversion=conversion,
        trace=trace,
        names=names,
        staff=True,
        verdict=verdict,
        can_reject=conversion.type != ConversionType.REFUND and conversion.status in EARNING,
        commissions=earned,
    )


@bp.post("/<bigid:conversion_id>/reject")
def reject(conversion_id: int):
    """Fraud found after the fact: reject a conversion that is already earning and take its commissions back
    (pending ones are rejected; approved or paid ones reversed from the affiliate's balance)."""
    conversion = db.session.get(Conversion, conversion_id) or abort(404)
    note = (request.form.get("note") or "").strip()[:1000]
    if unstorable(note):
        flash(f"The note {UNSTORABLE_MESSAGE}.", "error")
    elif not note:
        flash("Say why when rejecting: the note is kept in the audit log.", "error")
    elif decide(db.session, [conversion.id], "reject", actor_id=current_user.id, note=note, now=utcnow(), reopen=True):
        db.session.commit()
        flash("Conversion rejected; its commissions were taken back.", "success")
    else:
        flash("This conversion cannot be rejected here: it is not earning (it may already be rejected).", "error")
    return redirect(url_for("admin_conversions.show", conversion_id=conversion.id))
