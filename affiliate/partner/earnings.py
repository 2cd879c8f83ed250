"""An affiliate's earnings: the summary cards of their balances, their commissions a page at a time with when each is
or was paid, payouts, bonuses and clawbacks, and a statement CSV."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import Role, utcnow
from affiliate.money import to_decimal
from affiliate.notifications import COMMISSION_KINDS, PAYOUT_METHODS
from affiliate.params import paginate
from affiliate.services import partner_home, payout_reports, programs
from affiliate.services.exports import write_csv
from affiliate.services.payout_reports import statement as build_statement

bp = Blueprint("partner_earnings", __name__, url_prefix="/partner/earnings")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))
PAYOUTS_SHOWN = 6  # the statement CSV has every one
ADJUSTMENTS_SHOWN = 6


@bp.route("/")
def index():
    me = current_user.id
    page = paginate(payout_reports.commissions_of(me))
    orders = payout_reports.order_ids(db.session, {commission.conversion_id for commission in page.items})
    return render_template(
        "partner/earnings/index.html",
        balances=partner_home.summary(db.session, current_user, now=utcnow()),
        page=page,
        orders=orders,
        in_payouts=partner_home.payouts_of(db.session, me, page.items),
        program_names=programs.names(db.session, {commission.program_id for commission in page.items}),
        payouts=payout_reports.recent_payouts(db.session, me, PAYOUTS_SHOWN),
        adjustments=payout_reports.posted_adjustments(db.session, me, ADJUSTMENTS_SHOWN),
        kind_names=COMMISSION_KINDS,
        payout_methods=PAYOUT_METHODS,
    )


@bp.route("/statement.csv")
def statement():
    """Every commission, refund, bonus, clawback and payout of the signed-in affiliate with a running balance."""
    header = ("date_utc", "type", "description", "currency", "amount", "balance")
    rows = [
        (
            line.at.strftime("%Y-%m-%d %H:%M:%S"),
            line.kind,
            line.description,
            line.currency,
            to_decimal(line.amount_cents, line.currency),
            to_decimal(line.balance_cents, line.currency),
        )
        for line in build_statement(db.session, current_user.id)
    ]
    return csv_download(write_csv(rows, header), "clicktrail-statement.csv")
