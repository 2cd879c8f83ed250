"""An affiliate's own conversions: the list, and each one's trace with other affiliates' details hidden."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Conversion, Role
from affiliate.params import paginate
from affiliate.services.conversion_lists import commissions_of, credited_to
from affiliate.services.conversions import attribution_of, trace_for_affiliate

bp = Blueprint("partner_conversions", __name__, url_prefix="/partner/conversions")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def mine():
    return render_template("partner/conversions/mine.html", page=paginate(credited_to(current_user.id)))


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
