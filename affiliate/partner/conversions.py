"""An affiliate's own conversions: the list (filtered, searchable by order id, with their commission and where each
stands), and each one's trace with other affiliates' details hidden."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Conversion, Role
from affiliate.params import paginate
from affiliate.partner.forms import ConversionFilterForm
from affiliate.services import partner_conversions
from affiliate.services.conversion_lists import commissions_of
from affiliate.services.conversions import attribution_of, trace_for_affiliate
from affiliate.validators import options

bp = Blueprint("partner_conversions", __name__, url_prefix="/partner/conversions")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def mine():
    form = ConversionFilterForm(formdata=request.args)
    form.program.choices = options([(0, "All programs"), *partner_conversions.programs_of(db.session, current_user.id)])
    filtered = bool(request.args.keys() - {"page"})
    if not form.validate():
        return render_template("partner/conversions/mine.html", form=form, page=None, filtered=filtered), 400
    page = paginate(partner_conversions.mine(current_user.id, form.wanted()))
    return render_template(
        "partner/conversions/mine.html",
        form=form,
        page=page,
        query=form.query(),
        filtered=bool(form.query()),
        standings=partner_conversions.standings(db.session, current_user.id, page.items),
        type_names=partner_conversions.TYPE_NAMES,
    )


@bp.route("/<bigid:conversion_id>")
def mine_show(conversion_id: int):
    conversion = db.session.get(Conversion, conversion_id)
    if conversion is None or conversion.affiliate_id != current_user.id:
        abort(404)
    trace = trace_for_affiliate(attribution_of(conversion), current_user.id)
    return render_template(
        "shared/conversions/show.html",
        conversion=conversion,
        trace=trace,
        names={current_user.id: "you"},
        staff=False,
        commissions=commissions_of(db.session, conversion.id, beneficiary=current_user.id),
    )
