"""Conversions for finance and admin (all, full trace) and for affiliates (their own, others' details hidden)."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import aliased

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Commission, Conversion, ConversionStatus, ConversionType, Program, Role, User, utcnow
from affiliate.params import paginate, query_id
from affiliate.services.conversions import attribution_of, trace_for_affiliate
from affiliate.services.review import EARNING, decide
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

PAGE_SIZE = 50
FILTERS = ("program", "affiliate", "type", "status", "attributed")

staff = Blueprint("conversions", __name__, url_prefix="/admin/conversions")
staff.before_request(require_roles(Role.ADMIN, Role.FINANCE))

partner = Blueprint("partner_conversions", __name__, url_prefix="/partner/conversions")
partner.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@staff.route("/")
def index():
    page = paginate(_filtered(select(Conversion)), per_page=PAGE_SIZE)
    programs = db.session.scalars(select(Program).order_by(Program.name)).all()
    filters = {key: value for key, value in request.args.items() if key in FILTERS and value}
    return render_template(
        "conversions/index.html",
        page=page,
        programs=programs,
        types=list(ConversionType),
        statuses=list(ConversionStatus),
        filters=filters,
    )


@staff.route("/<bigid:conversion_id>")
def show(conversion_id: int):
    conversion = db.session.get(Conversion, conversion_id) or abort(404)
    affiliates = _names(attribution_of(conversion))
    verdict = json.loads(conversion.fraud_reasons) if conversion.fraud_reasons else []
    earned = _commissions(conversion)
    affiliates.update(_people({c.affiliate_id for c in earned} - set(affiliates)))
    return render_template(
        "conversions/show.html", conversion=conversion, trace=attribution_of(conversion), names=affiliates, staff=True,
        verdict=verdict, can_reject=conversion.type != ConversionType.REFUND and conversion.status in EARNING,
        commissions=earned,
    )  # fmt: skip


@staff.post("/<bigid:conversion_id>/reject")
def reject(conversion_id: int):
    """Fraud found after the fact: reject a conversion that is already earning and take its commissions back
    (pending ones are rejected; approved or paid ones reversed from the affiliate's balance)."""
    conversion = db.session.get(Conversion, conversion_id) or abort(404)
    note = (request.form.get("note") or "").strip()[:1000]
    if unstorable(note):
        flash(f"The note {UNSTORABLE_MESSAGE}.", "error")
    elif not note:
        flash("Say why when rejecting: the note is kept in the audit log.", "error")
    elif decide(db.session, [conversion.id], "reject", actor_id=current_user.id, note=note, now=utcnow(),
                reopen=True):  # fmt: skip
        db.session.commit()
        flash("Conversion rejected; its commissions were taken back.", "success")
    else:
        flash("This conversion cannot be rejected here: it is not earning (it may already be rejected).", "error")
    return redirect(url_for("conversions.show", conversion_id=conversion.id))


@partner.route("/")
def mine():
    query = (
        select(Conversion)
        .where(Conversion.affiliate_id == current_user.id)
        .order_by(Conversion.occurred_at.desc(), Conversion.id.desc())
    )
    return render_template("conversions/mine.html", page=paginate(query, per_page=PAGE_SIZE))


@partner.route("/<bigid:conversion_id>")
def mine_show(conversion_id: int):
    conversion = db.session.get(Conversion, conversion_id)
    if conversion is None or conversion.affiliate_id != current_user.id:
        abort(404)
    trace = trace_for_affiliate(attribution_of(conversion), current_user.id)
    return render_template(
        "conversions/show.html", conversion=conversion, trace=trace, names={current_user.id: "you"}, staff=False,
        commissions=_commissions(conversion, beneficiary=current_user.id),
    )  # fmt: skip


def _filtered(query):
    args = request.args
    if query_id("program"):
        query = query.where(Conversion.program_id == query_id("program"))
    if query_id("affiliate"):
        query = query.where(Conversion.affiliate_id == query_id("affiliate"))
    if args.get("type") in set(ConversionType):
        query = query.where(Conversion.type == args["type"])
    if args.get("status") in set(ConversionStatus):
        query = query.where(Conversion.status == args["status"])
    if args.get("attributed") == "no":
        query = query.where(Conversion.affiliate_id.is_(None))
    return query.order_by(Conversion.occurred_at.desc(), Conversion.id.desc())


def _commissions(conversion: Conversion, beneficiary: int | None = None) -> list[Commission]:
    """What the conversion earned, each with the rule, plan version and group that paid it; an affiliate
    sees only their own."""
    query = select(Commission).where(Commission.conversion_id == conversion.id)
    if beneficiary is not None:
        query = query.where(Commission.affiliate_id == beneficiary)
    return list(db.session.scalars(query.order_by(Commission.id)))


def _names(trace: dict) -> dict[int, str]:
    ids = {line.get("affiliate_id") for line in trace.get("trace", [])} | {trace.get("affiliate_id")}
    return _people(ids)


def _people(ids: set[int | None]) -> dict[int, str]:
    ids = ids - {None}
    if not ids:
        return {}
    person = aliased(User)
    return dict(db.session.execute(select(person.id, person.name).where(person.id.in_(ids))).all())
